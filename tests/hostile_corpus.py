"""Hostile requests, generated: what attackers, fuzzers and broken clients send.

Each case names the model it targets, the body and headers, and the answer it must get. The
integration suite sends every case to a real TorchServe and checks the answer, the time it
took, that no worker restarted, and that the next good request is still answered.
"""

from __future__ import annotations

import io
import json
import struct
import zlib
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from tests.images import decompression_bomb_png, encode


@dataclass(frozen=True)
class HostileCase:
    name: str
    model: str
    body: bytes
    status: int
    words: str = ""  # must appear in the JSON message ("" where the frontend answers with no body)
    headers: dict = field(default_factory=dict)

    @property
    def id(self) -> str:
        return f"{self.model}-{self.name}"


def noise_image(size=(64, 64), mode="RGB", seed=0) -> Image.Image:
    channels = {"L": 1, "RGB": 3, "RGBA": 4}[mode]
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode=mode)


def png_with_bad_crc() -> bytes:
    data = bytearray(encode(noise_image()))
    data[33 + 20] ^= 0xFF  # inside the first IDAT chunk: its CRC no longer matches
    return bytes(data)


def png_declaring(width: int, height: int) -> bytes:
    """A syntactically valid PNG header that declares width x height, with a tiny IDAT."""
    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + \
        chunk(b"IEND", b"")


def animated_gif() -> bytes:
    frames = [noise_image((32, 32), seed=seed).convert("P") for seed in range(3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, format="GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"><script>alert(1)</script></svg>'


def image_cases(model: str, settings: dict) -> list[HostileCase]:
    """For an image model whose model-config `handler:` section is `settings`."""
    max_image_bytes = settings["max_image_bytes"]
    jpeg, png = encode(noise_image(), "JPEG"), encode(noise_image())
    cases = [
        HostileCase("empty-body", model, b"", 400, "empty body"),
        HostileCase("json-instead-of-image", model, b'{"image": "x"}', 415, "expected PNG or JPEG bytes",
                    {"Content-Type": "application/json"}),
        HostileCase("text-instead-of-image", model, b"a digit, honestly", 415, "expected PNG or JPEG bytes",
                    {"Content-Type": "text/plain"}),
        HostileCase("random-bytes", model, np.random.default_rng(1).bytes(5000), 415, "not a PNG or JPEG"),
        HostileCase("png-magic-then-garbage", model, b"\x89PNG\r\n\x1a\n" + b"\xff" * 200, 415, "not a PNG or JPEG"),
        HostileCase("truncated-png", model, png[: len(png) // 2], 400, "truncated or corrupt"),
        HostileCase("truncated-jpeg", model, jpeg[: len(jpeg) // 2], 400, "truncated or corrupt"),
        HostileCase("jpeg-cut-inside-its-header", model, jpeg[:200], 400, "truncated or corrupt"),
        HostileCase("png-bad-crc", model, png_with_bad_crc(), 400, "truncated or corrupt"),
        HostileCase("decompression-bomb", model, decompression_bomb_png(), 413, "pixels"),
        HostileCase("declared-2-billion-pixels", model, png_declaring(50_000, 40_000), 413, "pixels"),
        HostileCase("one-pixel", model, encode(Image.new("L", (1, 1), 128)), 422, "at least"),
        HostileCase("10000x1", model, encode(Image.new("L", (10_000, 1), 128)), 422, "at least"),
        HostileCase("animated-gif", model, animated_gif(), 415, "not a PNG or JPEG"),
        HostileCase("svg-with-script", model, SVG, 415, "not a PNG or JPEG", {"Content-Type": "image/svg+xml"}),
        HostileCase("over-model-byte-limit", model, b"\xff\xd8\xff" + b"\x00" * max_image_bytes, 413, "limit"),
        HostileCase("over-max-request-size", model, b"\x00" * (4 * 1024 * 1024 + 1), 413),
    ]
    return cases


def text_cases(model: str, settings: dict) -> list[HostileCase]:
    """For a text model whose model-config `handler:` section is `settings`."""
    max_chars, max_texts = settings["max_text_chars"], settings["max_texts_per_request"]
    # texts each within max_chars whose sum is over the request's limit
    per_request = settings["max_request_chars"]
    total_over = [("x " * (max_chars // 2))[:max_chars]] * (per_request // max_chars + 1)
    plain, as_json = {"Content-Type": "text/plain; charset=utf-8"}, {"Content-Type": "application/json"}
    return [
        HostileCase("empty-body", model, b"", 400, "empty", plain),
        HostileCase("empty-body-no-type", model, b"", 400, "empty"),
        HostileCase("whitespace-only", model, " \t\n\u00a0 ".encode(), 400, "only whitespace", plain),
        HostileCase("invalid-utf8", model, b"caf\xe9 \xff\xfe great", 400, "not valid UTF-8", plain),
        HostileCase("invalid-utf8-no-type", model, b"\xc3\x28 terrible", 400, "not valid UTF-8"),
        HostileCase("million-characters", model, b"good " * 200_000, 413, f"the limit is {max_chars}", plain),
        HostileCase("json-wrong-key", model, b'{"txt": "hello"}', 400, "expected a JSON object", as_json),
        HostileCase("json-number-text", model, b'{"text": 5}', 400, "must be a string", as_json),
        HostileCase("json-list-of-numbers", model, b"[1, 2, 3]", 400, "must be a string", as_json),
        HostileCase("json-empty-list", model, b"[]", 400, "empty list", as_json),
        HostileCase("json-list-with-empty-text", model, b'["fine", "  "]', 400, "texts[1]", as_json),
        HostileCase("json-broken", model, b'{"text": "unterminated', 400, "not valid JSON",
                    {"Content-Type": "application/json; charset=utf-8"}),
        HostileCase("json-deeply-nested", model, b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply",
                    as_json),
        HostileCase("json-10000-texts", model, ("[" + ",".join(['"ok"'] * 10_000) + "]").encode(), 413,
                    f"the limit is {max_texts}", as_json),
        HostileCase("json-texts-over-request-characters", model, json.dumps(total_over).encode(), 413,
                    f"characters in one request; the limit is {per_request}", as_json),
        HostileCase("json-sentences-option-not-boolean", model, b'{"text": "fine", "sentences": "maybe"}', 400,
                    "sentences must be true or false", as_json),
        HostileCase("over-max-request-size", model, b"a" * (4 * 1024 * 1024 + 1), 413, "", plain),
    ]


def params_cases(model: str, settings: dict) -> list[HostileCase]:
    """For a generator of {"digit", "count", "seed"} whose model-config `handler:` section is `settings`."""
    max_count, as_json = settings["max_count"], {"Content-Type": "application/json"}

    def request(name, body, status, words, headers=as_json):
        return HostileCase(name, model, body if isinstance(body, bytes) else json.dumps(body).encode(), status,
                           words, headers)
    return [
        request("empty-body", b"", 400, "empty body"),
        request("not-json", b"seven, please", 400, "not valid JSON", {"Content-Type": "text/plain"}),
        request("invalid-utf8", b'{"digit": "\xff"}', 400, "not valid", {}),
        request("png-instead-of-json", encode(noise_image((28, 28), "L")), 400, "not valid", {"Content-Type": "image/png"}),
        request("json-list", [7, 4], 400, "expected a JSON object"),
        request("json-deeply-nested", b"[" * 100_000 + b"]" * 100_000, 400, "nested too deeply"),
        request("unknown-field", {"digit": 7, "colour": "red"}, 400, "unknown field(s) colour"),
        request("digit-10", {"digit": 10}, 400, "digit must be at most 9"),
        request("digit-negative", {"digit": -1}, 400, "digit must be at least 0"),
        request("digit-as-string", {"digit": "7"}, 400, "digit must be an integer"),
        request("digit-fractional", {"digit": 7.5}, 400, "digit must be an integer"),
        request("digit-boolean", {"digit": True}, 400, "digit must be an integer"),
        request("count-zero", {"count": 0}, 400, "count must be at least 1"),
        request("count-over-limit", {"count": max_count + 1}, 413, f"count must be at most {max_count}"),
        request("count-a-billion", {"count": 10**9}, 413, f"count must be at most {max_count}"),
        request("count-huge-integer", {"count": 10**400}, 413, f"count must be at most {max_count}"),
        request("seed-negative", {"seed": -5}, 400, "seed must be at least 0"),
        request("seed-over-63-bits", {"seed": 2**64}, 400, "seed must be at most"),
        request("accept-only-jpeg", {"digit": 1}, 406, "cannot answer", {**as_json, "Accept": "image/jpeg"}),
        HostileCase("over-max-request-size", model, b" " * (4 * 1024 * 1024 + 1), 413, "", as_json),
    ]


# One builder per input kind (training/catalog.py `input_kind`).
CASE_BUILDERS = {"image": image_cases, "text": text_cases, "params": params_cases}


def hostile_cases(entry) -> list[HostileCase]:
    """Every hostile case for one catalog entry, with its own limits."""
    return CASE_BUILDERS[entry.input_kind](entry.name, entry.handler_settings())
