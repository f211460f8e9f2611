"""Shared base for handlers whose requests are one image each (MNIST, ResNet)."""

from __future__ import annotations

from handlers.base import ServingHandler
from handlers.transforms.errors import InputError
from handlers.transforms.images import decode_image


class ImageHandler(ServingHandler):
    default_settings = {**ServingHandler.default_settings,
                        "max_image_bytes": 4 * 1024 * 1024, "max_image_pixels": 16_000_000, "min_image_side": 8}
    oip_elements_are_binary = True

    def decode_request(self, payload):
        return self.image_to_tensor(self.payload_to_image(payload))

    def payload_to_image(self, payload):
        """Request bytes -> a loaded PIL image within the model's limits (apart so that loadtest/stages.py
        can time decoding and preprocessing on their own)."""
        if not isinstance(payload, (bytes, bytearray)):
            raise InputError(f"expected PNG or JPEG bytes, got {type(payload).__name__} "
                             "(send the image as the raw body, not JSON or text)", status=415)
        return decode_image(payload, self.settings["max_image_bytes"], self.settings["max_image_pixels"],
                            self.settings["min_image_side"])

    def image_to_tensor(self, image):
        raise NotImplementedError
