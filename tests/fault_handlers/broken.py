"""Test-only handler whose model cannot load: its workers crash-loop while /ping says Healthy."""

from handlers.mnist import MnistHandler


class BrokenHandler(MnistHandler):
    def initialize(self, context):
        raise RuntimeError("weights could not be loaded (deliberately broken test archive)")
