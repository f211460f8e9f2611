"""Export a trained model: state_dict, TorchScript, a parity check, test metrics, metadata.

Every model goes through `export_model`, so every artifact folder has the same files:
  <name>_state_dict.pt     weights for eager PyTorch
  <name>.torchscript.pt    what TorchServe loads
  metadata.json            accuracy, data, versions, git commit, input spec
  confusion_matrix.png
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from datetime import datetime, timezone
from importlib import metadata as pkg_metadata
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score
from torch import nn

from training.engine import call_model, predict

PARITY_ATOL = 1e-5
RECORDED_PACKAGES = ("torch", "torchvision", "torchserve", "torch-model-archiver", "numpy", "pillow",
                     "scikit-learn")


class ParityError(RuntimeError):
    """TorchScript and eager outputs differ: the served model would not be the trained one."""


def sha256_of_arrays(*arrays) -> str:
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def package_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = pkg_metadata.version(name)
        except pkg_metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                              check=True, cwd=Path(__file__).parent).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


@torch.inference_mode()
def check_parity(eager: nn.Module, scripted: torch.jit.ScriptModule, batches) -> float:
    """Largest |eager - scripted| over `batches` of inputs; raises ParityError past PARITY_ATOL
    or on any differing argmax."""
    worst = 0.0
    for inputs in batches:
        expected, actual = call_model(eager, inputs), call_model(scripted, inputs)
        delta = (expected - actual).abs().max().item()
        worst = max(worst, delta)
        if delta > PARITY_ATOL or not torch.equal(expected.argmax(1), actual.argmax(1)):
            raise ParityError(f"TorchScript differs from eager: max |delta| = {delta:.3g} "
                              f"(limit {PARITY_ATOL}) or argmax differs")
    return worst


def classification_metrics(logits: torch.Tensor, targets: torch.Tensor) -> dict:
    predicted = logits.argmax(1).numpy()
    return {
        "accuracy": float((predicted == targets.numpy()).mean()),
        "macro_f1": float(f1_score(targets.numpy(), predicted, average="macro")),
        "n": int(len(targets)),
    }


def plot_confusion_matrix(logits: torch.Tensor, targets: torch.Tensor, class_names: list[str],
                          path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = confusion_matrix(targets.numpy(), logits.argmax(1).numpy(), labels=range(len(class_names)))
    size = 2 + 0.5 * len(class_names)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(matrix, cmap="Blues")
    ax.set(xticks=range(len(class_names)), yticks=range(len(class_names)),
           xticklabels=class_names, yticklabels=class_names, xlabel="predicted", ylabel="true")
    ax.tick_params(axis="x", rotation=45)
    for (row, col), count in np.ndenumerate(matrix):
        ax.text(col, row, str(count), ha="center", va="center",
                color="white" if count > matrix.max() / 2 else "black", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def export_torchscript(model: nn.Module, name: str, out_dir: Path, parity_batches) -> float:
    """Write `<name>_state_dict.pt` and `<name>.torchscript.pt`; answer the parity check's largest delta."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    model = model.eval().cpu()
    torch.save(model.state_dict(), out_dir / f"{name}_state_dict.pt")
    scripted_path = out_dir / f"{name}.torchscript.pt"
    torch.jit.save(torch.jit.script(model), scripted_path)
    return check_parity(model, torch.jit.load(scripted_path, map_location="cpu"), parity_batches)


def write_metadata(out_dir: Path, name: str, record: dict) -> dict:
    """metadata.json: the model's figures with its provenance (time, commit, package versions)."""
    record = {"model": name, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "git_commit": git_commit(), "packages": package_versions(), **record}
    (Path(out_dir) / "metadata.json").write_text(json.dumps(record, indent=2))
    return record


def export_model(model: nn.Module, name: str, out_dir: Path, test_loader, class_names: list[str],
                 metadata: dict, parity_batches=None) -> dict:
    """Write the artifacts of a trained classifier and return its metadata.

    `parity_batches` are model inputs for the parity check; by default the first three test batches.
    """
    if parity_batches is None:
        parity_batches = [inputs for inputs, _ in list(test_loader)[:3]]
    max_delta = export_torchscript(model, name, out_dir, parity_batches)
    logits, targets = predict(model, test_loader, torch.device("cpu"))
    plot_confusion_matrix(logits, targets, class_names, Path(out_dir) / "confusion_matrix.png")
    return write_metadata(out_dir, name, {"classes": class_names, "test": classification_metrics(logits, targets),
                                          "torchscript_parity_max_abs_delta": max_delta, **metadata})
