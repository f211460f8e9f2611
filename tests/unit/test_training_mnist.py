import json
import re
import subprocess
from pathlib import Path

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from handlers.transforms import digits
from training.catalog import CATALOG
from training.data.mnist import load_mnist_digits, mnist_splits
from training.data.splits import limit_per_split
from training.export import PARITY_ATOL, ParityError, check_parity, export_model
from training.mnist import DigitNet

REPO = Path(__file__).resolve().parents[2]


class DigitNetThatDriftsWhenScripted(DigitNet):
    """DigitNet whose TorchScript adds `drift` to every logit: a served model that is not the trained one."""

    def __init__(self, drift: float):
        super().__init__()
        self.drift = drift

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.classifier(self.features(x))
        if torch.jit.is_scripting():
            return logits + self.drift
        return logits


def random_digit_loader() -> DataLoader:
    generator = torch.Generator().manual_seed(0)
    inputs, targets = torch.randn(24, 1, 28, 28, generator=generator), torch.randint(0, 10, (24,), generator=generator)
    return DataLoader(TensorDataset(inputs, targets), batch_size=8)


def fast_limit() -> int:
    argv = CATALOG["mnist"].fast_training_args
    return int(argv[argv.index("--limit") + 1])


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
    assert record["packages"]["torch"] == torch.__version__.split("+")[0]
    assert re.fullmatch(r"[0-9a-f]{40}", record["git_commit"]), record["git_commit"]
    is_ancestor = subprocess.run(["git", "merge-base", "--is-ancestor", record["git_commit"], "HEAD"], cwd=REPO)
    assert is_ancestor.returncode == 0, f"{record['git_commit']} is not in this repository's history"
    splits = limit_per_split(mnist_splits(load_mnist_digits()[1], seed=0), fast_limit(), seed=0)
    assert record["dataset"]["splits"] == splits.sizes()
    assert record["dataset"]["split_sha256"] == splits.fingerprints()
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


def test_export_refuses_a_model_whose_torchscript_differs_and_writes_no_metadata(tmp_path):
    with pytest.raises(ParityError):
        export_model(DigitNetThatDriftsWhenScripted(1e-3), "mnist", tmp_path, random_digit_loader(),
                     digits.CLASS_NAMES, metadata={})
    assert not (tmp_path / "metadata.json").exists()


def test_export_records_the_parity_delta_it_measured(tmp_path):
    model = DigitNetThatDriftsWhenScripted(PARITY_ATOL / 4)  # differs, but within the tolerance
    record = export_model(model, "mnist", tmp_path, random_digit_loader(), digits.CLASS_NAMES, metadata={})
    scripted = torch.jit.load(str(tmp_path / "mnist.torchscript.pt"))
    recomputed = check_parity(model.eval(), scripted, [inputs for inputs, _ in list(random_digit_loader())[:3]])
    assert PARITY_ATOL / 8 < recomputed <= PARITY_ATOL
    assert record["torchscript_parity_max_abs_delta"] == recomputed
    assert json.loads((tmp_path / "metadata.json").read_text())["torchscript_parity_max_abs_delta"] == recomputed
