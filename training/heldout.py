"""Held-out test data as clients send it, and as the trained model sees it offline.

Every model's training module turns its held-out test split (never trained on, never used for
early stopping) into `Sample`s: the raw bytes a client sends, with the true label. `make
predict`, `make verify`, the load tests, the bench and the tests send these. `OfflineHeldout`
pairs them with the eager model's probabilities on the same examples, prepared by the training
pipeline's own dataset code: what "served equals offline" is checked against.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from training.engine import predict


@dataclass(frozen=True)
class Sample:
    body: bytes
    content_type: str
    expected: str  # the true label, as the service names it


@dataclass(frozen=True)
class OfflineHeldout:
    samples: list[Sample]
    probabilities: torch.Tensor  # (len(samples), classes): the eager model, offline
    class_names: list[str]


def json_text(text: str) -> bytes:
    """A text as the JSON object every client (and LitServe) can send."""
    return json.dumps({"text": text}).encode()


def evenly_spread(indices: np.ndarray, count: int | None) -> np.ndarray:
    """`count` of `indices` spread evenly over them (all of them when count is None), so a
    sorted-by-class split gives every class its share."""
    indices = np.asarray(indices)
    if count is None or count >= len(indices):
        return indices
    return indices[np.linspace(0, len(indices) - 1, count).astype(int)]


def load_metadata(artifact_dir: Path) -> dict:
    return json.loads((Path(artifact_dir) / "metadata.json").read_text())


def load_state_dict(model: nn.Module, artifact_dir: Path, name: str) -> nn.Module:
    """`model` with the exported weights of `artifact_dir/<name>_state_dict.pt`, in eval mode on the CPU."""
    state = torch.load(Path(artifact_dir) / f"{name}_state_dict.pt", map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval()


def eager_probabilities(model: nn.Module, loader) -> torch.Tensor:
    """Softmax of the eager model over a loader of (inputs, targets), in loader order."""
    logits, _ = predict(model, loader, torch.device("cpu"))
    return logits.softmax(dim=1)
