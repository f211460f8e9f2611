"""MNIST digits: PNG/JPEG of any size and mode -> {"label": d, "probabilities": {...}}.

Open Inference Protocol: input "image" (BYTES, one encoded image per element); outputs "label"
(INT64 [n]) and "probabilities" (FP32 [n, 10], digits 0-9).
"""

from handlers.image_base import ImageHandler
from handlers.oip import Signature, Tensor
from handlers.transforms import digits


class MnistHandler(ImageHandler):
    signature = Signature(input=Tensor("image", "BYTES", (-1,)),
                          outputs=(Tensor("label", "INT64", (-1,)),
                                   Tensor("probabilities", "FP32", (-1, len(digits.CLASS_NAMES)))))

    def image_to_tensor(self, image):
        return digits.image_to_tensor(image)

    def encode_responses(self, logits, options):
        return [digits.probabilities_to_response(row) for row in logits.softmax(dim=1)]

    def oip_outputs(self, answers, options):
        label, probabilities = self.signature.outputs
        return [Tensor(label.name, label.datatype, (len(answers),), [answer["label"] for answer in answers]),
                Tensor(probabilities.name, probabilities.datatype, (len(answers), len(digits.CLASS_NAMES)),
                       [answer["probabilities"][name] for answer in answers for name in digits.CLASS_NAMES])]
