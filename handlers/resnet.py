"""Image classification with class names: PNG/JPEG of any size and mode ->
[{"label": name, "score": p}, ...], the k most likely classes, most likely first.

k is `default_topk` (model-config) unless the request asks for another: header `X-TopK: 5` or a
multipart field `topk` (TorchServe 0.12 does not pass the query string to handlers, so
`?topk=` cannot work). Class names come from index_to_name.json and the input
size from metadata.json, both written by training and packed into the .mar.

Open Inference Protocol: input "image" (BYTES, one encoded image per element), request parameter
"topk"; outputs "labels" (BYTES [n, k]) and "scores" (FP32 [n, k]), most likely first.
"""

import json
from pathlib import Path

from handlers.image_base import ImageHandler
from handlers.oip import Signature, Tensor
from handlers.transforms import vision
from handlers.transforms.images import to_rgb


class ResnetHandler(ImageHandler):
    default_settings = {**ImageHandler.default_settings, "default_topk": 3}
    signature = Signature(input=Tensor("image", "BYTES", (-1,)),
                          outputs=(Tensor("labels", "BYTES", (-1, -1)), Tensor("scores", "FP32", (-1, -1))))

    def initialize(self, context):
        super().initialize(context)
        model_dir = Path(context.system_properties["model_dir"])
        index_to_name = json.loads((model_dir / "index_to_name.json").read_text())
        self.class_names = [index_to_name[str(i)] for i in range(len(index_to_name))]
        image_size = json.loads((model_dir / "metadata.json").read_text())["input"]["image_size"]
        self.transform = vision.eval_transform(image_size)

    def request_options(self, row, idx):
        raw = row.get("topk", self.request_header(idx, "X-TopK"))
        return {} if raw is None else {"topk": vision.parse_top_k(raw, len(self.class_names))}

    def oip_options(self, parameters):
        raw = parameters.get("topk")
        return {} if raw is None else {"topk": vision.parse_top_k(raw, len(self.class_names))}

    def image_to_tensor(self, image):
        return self.transform(to_rgb(image))

    def encode_responses(self, logits, options):
        return [vision.top_k(row, self.class_names, option.get("topk", self.settings["default_topk"]))
                for row, option in zip(logits.softmax(dim=1), options)]

    def oip_outputs(self, answers, options):
        labels, scores = self.signature.outputs
        shape = (len(answers), len(answers[0]))
        return [Tensor(labels.name, labels.datatype, shape, [top["label"] for answer in answers for top in answer]),
                Tensor(scores.name, scores.datatype, shape, [top["score"] for answer in answers for top in answer])]
