import json

import pytest
import torch

from training.export import ParityError, check_parity
from training.mnist import DigitNet


def test_small_training_run_beats_chance_clearly_on_heldout_digits(metadata):
    test = metadata["mnist"]["test"]
    assert test["n"] >= 200
    assert test["accuracy"] >= 0.75, test  # chance is 0.10; the full run reaches ~0.98


def test_export_writes_every_artifact(artifacts, metadata):
    files = {path.name for path in (artifacts / "mnist").iterdir()}
    assert {"mnist_state_dict.pt", "mnist.torchscript.pt", "metadata.json", "confusion_matrix.png",
            "history.json", "history.png"} <= files
    record = metadata["mnist"]
    assert record["torchscript_parity_max_abs_delta"] <= 1e-5
    assert len(record["dataset"]["train_sha256"]) == 64
    assert record["packages"]["torch"] and record["git_commit"]
    assert sum(record["dataset"]["splits"].values()) > 0
    history = json.loads((artifacts / "mnist" / "history.json").read_text())
    assert len(history["val_loss"]) == record["history"]["epochs_run"]


def test_state_dict_loads_into_a_fresh_model_and_matches_torchscript(artifacts):
    model = DigitNet()
    model.load_state_dict(torch.load(artifacts / "mnist" / "mnist_state_dict.pt", weights_only=True))
    scripted = torch.jit.load(str(artifacts / "mnist" / "mnist.torchscript.pt"))
    batch = [torch.randn(4, 1, 28, 28)]
    assert check_parity(model.eval(), scripted, batch) <= 1e-5


def test_parity_check_fails_loudly_when_torchscript_differs(artifacts):
    tampered = DigitNet().eval()
    tampered.load_state_dict(torch.load(artifacts / "mnist" / "mnist_state_dict.pt", weights_only=True))
    with torch.no_grad():
        tampered.classifier[-1].bias.add_(1e-3)
    scripted = torch.jit.load(str(artifacts / "mnist" / "mnist.torchscript.pt"))
    with pytest.raises(ParityError):
        check_parity(tampered, scripted, [torch.randn(4, 1, 28, 28)])
