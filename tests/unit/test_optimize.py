"""training/optimize.py: every model gets measured optimised variants, and only one that keeps
the model's answers ships (in the archive, the server and `make verify`'s offline side)."""

from __future__ import annotations

import json
import zipfile

import pytest
import torch
from torch import nn

from training.catalog import CATALOG
from training.optimize import (ACCURACY_GATE_POINTS, FP32, INT8, QuantizationPlan, batch_dependence, candidates,
                               shipped_file, verdict)

CLASSIFIERS = [name for name, entry in CATALOG.items() if not entry.is_generator]  # a generator ships fp32


@pytest.mark.parametrize("accuracy, dependence, passes", [
    (0.900 - ACCURACY_GATE_POINTS / 100 + 1e-9, 0.0, True),  # at the gate
    (0.895, 0.0, False),                                    # 0.5 points lost
    (0.901, 0.0, True),                                     # better than fp32
    (0.900, 0.01, False),                                   # answers depend on the batch
])
def test_a_variant_ships_only_within_the_accuracy_gate_and_batch_independent(accuracy, dependence, passes):
    reason = verdict(0.900, {"test_accuracy": accuracy, "batch_dependence": dependence})
    assert (reason is None) == passes


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_every_model_records_each_variant_and_ships_the_fastest_that_passes(metadata, artifacts, model):
    record = metadata[model]
    variants = record["variants"]
    assert FP32 in variants and INT8 in variants
    for variant, figures in variants.items():
        assert (artifacts / model / figures["file"]).exists()
        assert 0 < figures["test_accuracy"] <= 1 and figures["examples_per_second_1_thread"] > 0
        if variant != FP32:
            expected = verdict(variants[FP32]["test_accuracy"], figures)
            assert figures["not_shipped_because"] == expected
    passing = [v for v, figures in variants.items() if v != FP32 and figures["not_shipped_because"] is None]
    expected = max(passing, key=lambda v: variants[v]["examples_per_second_1_thread"], default=FP32)
    assert record["shipped_variant"] == expected
    assert shipped_file(artifacts / model, model).name == variants[expected]["file"]


@pytest.mark.parametrize("model", CLASSIFIERS)
def test_the_archive_carries_the_shipped_variant(model_store, metadata, model):
    with zipfile.ZipFile(model_store / f"{model}.mar") as mar:
        manifest = json.loads(mar.read("MAR-INF/MANIFEST.json"))
        shipped = metadata[model]["variants"][metadata[model]["shipped_variant"]]["file"]
        assert manifest["model"]["serializedFile"] == shipped
        assert shipped in mar.namelist()


def test_static_int8_keeps_the_cnn_answers_on_held_out_digits(artifacts, metadata):
    variants = metadata["mnist"]["variants"]
    assert variants[INT8]["test_accuracy"] >= variants[FP32]["test_accuracy"] - 0.01
    assert variants[INT8]["batch_dependence"] < 1e-4  # fixed activation scales: no neighbour effect


class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        self.first, self.last = nn.Conv2d(1, 4, 3), nn.Linear(4 * 6 * 6, 3)

    def forward(self, x):
        return self.last(torch.relu(self.first(x)).flatten(1))


def tiny_plan(evaluate) -> QuantizationPlan:
    torch.manual_seed(0)
    batches = [torch.randn(4, 1, 8, 8) for _ in range(4)]
    return QuantizationPlan(Tiny().eval(), "static", (batches[0],), evaluate, calibration=batches,
                            sensitive_layers=("first", "last"))


def test_static_quantisation_keeps_sensitive_layers_in_fp32_only_when_the_gate_needs_it():
    kept = {}
    for name, evaluate in {"pass": lambda model: 0.9,
                           "fail": lambda model: 0.9 if isinstance(model, Tiny) else 0.5}.items():
        plan = tiny_plan(evaluate)
        [(variant, _, recipe)] = list(candidates(plan, evaluate(plan.model)))
        assert variant == INT8
        kept[name] = recipe["kept_fp32"]
    assert kept == {"pass": [], "fail": ["first", "last"]}


def test_batch_dependence_sees_per_batch_activation_scales():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 2)).eval()
    inputs = (torch.randn(8, 16) * torch.linspace(0.1, 10, 8)[:, None],)  # very different rows
    assert batch_dependence(model, inputs) < 1e-6
    dynamic = torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
    assert batch_dependence(dynamic, inputs) > 1e-4
