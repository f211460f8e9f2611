"""The model inputs that held-out requests had before preprocessing was made fast, and the check
that they still have them: within one grey level, with the same label.

tests/data/preprocess_reference.npz.xz holds the uint8 pixels that commit dfbf0e7's preprocessing
made of each request of a held-out set (tests/data/README.md says how), with a digest of the
requests' bodies.
"""

from __future__ import annotations

import hashlib
import io
import lzma
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch

REFERENCE = Path(__file__).resolve().parent / "data" / "preprocess_reference.npz.xz"


@lru_cache(maxsize=1)
def reference() -> dict[str, np.ndarray]:
    return dict(np.load(io.BytesIO(lzma.decompress(REFERENCE.read_bytes()))))


def digest(bodies: list[bytes]) -> str:
    return hashlib.sha256(b"".join(hashlib.sha256(body).digest() for body in bodies)).hexdigest()


def assert_served_like_reference(handler, bodies: list[bytes], heldout_set: str, mean, std) -> None:
    """`handler`'s model inputs for `bodies` are within one grey level of the reference pixels of
    `heldout_set`, normalised by definition with the per-channel `mean` and `std` (a grey reference
    stands for equal channels), and its model gives every request the reference's label."""
    assert digest(bodies) == str(reference()[f"{heldout_set}_inputs_sha256"]), \
        "these are not the requests the reference was made of: remake it as tests/data/README.md says"
    mean, std = (torch.tensor(values, dtype=torch.float64).view(1, -1, 1, 1) for values in (mean, std))
    grey = torch.from_numpy(reference()[heldout_set]).double().unsqueeze(1) / 255
    expected, grey_level = ((grey - mean) / std).float(), (1 / 255 / std).float()
    served = handler.collate([handler.decode_request(bytearray(body)) for body in bodies])
    grey_levels_off = ((served - expected).abs() / grey_level).amax(dim=(1, 2, 3))
    assert grey_levels_off.max() <= 1.001, f"{int((grey_levels_off > 1.001).sum())} of {len(bodies)} requests moved"
    served_labels, reference_labels = handler.forward(served).argmax(1), handler.forward(expected).argmax(1)
    assert torch.equal(served_labels, reference_labels), \
        f"{int((served_labels != reference_labels).sum())} of {len(bodies)} labels changed"
