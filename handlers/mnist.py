"""MNIST digits: PNG/JPEG of any size and mode -> {"label": d, "probabilities": {...}}."""

from handlers.image_base import ImageHandler
from handlers.transforms import digits


class MnistHandler(ImageHandler):
    def image_to_tensor(self, image):
        return digits.image_to_tensor(image)

    def encode_responses(self, logits, options):
        return [digits.probabilities_to_response(row) for row in logits.softmax(dim=1)]
