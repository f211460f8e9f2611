"""Optimised variants of an exported model, shipped only where they keep what the model answers.

    python -m training.optimize mnist [--artifacts artifacts] [--ship fp32]

Next to the fp32 TorchScript file the export wrote, this writes
  <name>.int8.torchscript.pt  CNN, ResNet: static int8, FX graph mode with the x86 backend's
                              defaults: conv + batch norm + ReLU fused, weights per channel,
                              activation ranges observed on training images; traced and frozen.
                              LSTM: dynamic int8 (weights int8, activations quantised per call).
  <name>.fp16.torchscript.pt  LSTM: dynamic fp16 (weights fp16, fp32 arithmetic).
Every variant is measured on the held-out test set (accuracy), in process (model-only
throughput at the model-config's batch size, one thread) and for batch dependence (how far an
example's probabilities move between running in a batch and alone). metadata.json gains
"variants" and "shipped_variant": the fastest variant that loses at most ACCURACY_GATE_POINTS
points and answers each example as if alone, else fp32. Static quantisation that misses the
gate is retried with the layers most sensitive to it (first convolution, classifier) in fp32.
`make archive` packs the shipped file; `make verify`, the bench and the tests run it.

Why torch.ao and not the PT2E flow that replaces it: in torch 2.14 PT2E lives in torchao, and
its int8 kernels are reached only through Inductor: a torch.compile in every worker at start-up
(cold start) or an AOTInductor package compiled per CPU at export. torch.ao's quantised
TorchScript runs the same fbgemm/oneDNN int8 kernels from a plain file any TorchServe worker
(or other server) loads, with no compiler.
"""

from __future__ import annotations

import argparse
import copy
import json
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn
from torch.ao.quantization import get_default_qconfig_mapping, quantize_dynamic
from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx

from training.catalog import CATALOG, REPO
from training.engine import call_model, predict
from training.export import check_parity

ACCURACY_GATE_POINTS = 0.3
BATCH_INDEPENDENCE_TOLERANCE = 1e-4  # as `make verify` compares served and offline probabilities
FP32, INT8, FP16 = "fp32", "int8", "fp16"
BACKEND = "x86"


@dataclass
class QuantizationPlan:
    """What a training module hands over for its model (its `quantization_plan(artifact_dir)`)."""
    model: nn.Module                         # fp32, eager, from the exported state_dict
    scheme: str                              # "static" or "dynamic"
    example_inputs: tuple                    # one real batch at the served batch size, as the handler calls the model
    evaluate: Callable[[nn.Module], float]   # held-out test accuracy of any variant
    calibration: list = field(default_factory=list)   # model inputs from the training split (static)
    sensitive_layers: tuple[str, ...] = ()   # kept in fp32 if quantising everything misses the gate


def variant_file(name: str, variant: str) -> str:
    return f"{name}.torchscript.pt" if variant == FP32 else f"{name}.{variant}.torchscript.pt"


def shipped_file(model_dir: Path, name: str) -> Path:
    """The TorchScript file of the variant metadata.json ships (fp32 for artifacts made before variants)."""
    path = Path(model_dir) / "metadata.json"
    variant = json.loads(path.read_text()).get("shipped_variant", FP32) if path.exists() else FP32
    return Path(model_dir) / variant_file(name, variant)


def shipped_model(model_dir: Path, name: str, fp32_model: nn.Module) -> nn.Module:
    """What the server runs, for offline comparisons: the eager fp32 model, or the shipped int8
    TorchScript file (equal to its eager form: checked at export)."""
    path = shipped_file(model_dir, name)
    return fp32_model if path.name == variant_file(name, FP32) else torch.jit.load(path, map_location="cpu")


def heldout_accuracy(model: nn.Module, loader) -> float:
    logits, targets = predict(model, loader, torch.device("cpu"))
    return (logits.argmax(1) == targets).float().mean().item()


def quantize_static(model: nn.Module, example_inputs: tuple, calibration: list, keep_float=()) -> nn.Module:
    mapping = get_default_qconfig_mapping(BACKEND)  # per-channel weights, histogram-observed activations
    for layer in keep_float:
        mapping = mapping.set_module_name(layer, None)
    prepared = prepare_fx(copy.deepcopy(model).eval(), mapping, example_inputs)
    with torch.inference_mode():
        for inputs in calibration:
            call_model(prepared, inputs)
    return convert_fx(prepared)


def to_torchscript(model: nn.Module, scheme: str, example_inputs: tuple) -> torch.jit.ScriptModule:
    if scheme == "dynamic":  # the LSTM's packing depends on the lengths: script, do not trace
        return torch.jit.script(model)
    with warnings.catch_warnings():  # FX's generated code scripts badly in 2.14; the graph has no branches
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        return torch.jit.freeze(torch.jit.trace(model, example_inputs))


@torch.inference_mode()
def examples_per_second(model: nn.Module, example_inputs: tuple, seconds: float = 1.5) -> float:
    """Model-only throughput on one thread at the served batch size."""
    for _ in range(3):
        call_model(model, example_inputs)
    batch, calls, started = len(example_inputs[0]), 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call_model(model, example_inputs)
        calls += 1
    return batch * calls / (time.perf_counter() - started)


def points_lost(fp32_accuracy: float, accuracy: float) -> float:
    return 100 * (fp32_accuracy - accuracy)


def verdict(fp32_accuracy: float, candidate: dict) -> str | None:
    """Why `candidate` may not ship, or None: it must keep the accuracy and answer each example
    as if it were alone (per-batch activation scales make an answer depend on its neighbours)."""
    loss = points_lost(fp32_accuracy, candidate["test_accuracy"])
    if loss > ACCURACY_GATE_POINTS:
        return f"loses {loss:.2f} points on the held-out test set (gate: {ACCURACY_GATE_POINTS})"
    if candidate["batch_dependence"] > BATCH_INDEPENDENCE_TOLERANCE:
        return (f"an answer moves by up to {candidate['batch_dependence']:.3f} in probability with its batch "
                f"neighbours (allowed: {BATCH_INDEPENDENCE_TOLERANCE:g})")
    return None


@torch.inference_mode()
def batch_dependence(model: nn.Module, inputs: tuple) -> float:
    """Largest change of an example's probabilities between running in `inputs`' batch and alone."""
    together = call_model(model, inputs).softmax(1)
    alone = torch.cat([call_model(model, tuple(part[row:row + 1] for part in inputs)).softmax(1)
                       for row in range(len(inputs[0]))])
    return (together - alone).abs().max().item()


def quantize_static_within_gate(plan: QuantizationPlan, fp32_accuracy: float) -> tuple[nn.Module, dict]:
    """Everything int8, or, if that misses the accuracy gate, with the sensitive layers in fp32."""
    for keep in ((), plan.sensitive_layers):
        model = quantize_static(plan.model, plan.example_inputs, plan.calibration, keep)
        if points_lost(fp32_accuracy, plan.evaluate(model)) <= ACCURACY_GATE_POINTS or not plan.sensitive_layers:
            break
    return model, {"scheme": "static int8", "backend": BACKEND, "calibration_batches": len(plan.calibration),
                   "kept_fp32": list(keep)}


def candidates(plan: QuantizationPlan, fp32_accuracy: float):
    """(variant, eager model, recipe) of each optimised variant the plan's scheme allows."""
    if plan.scheme == "static":
        yield INT8, *quantize_static_within_gate(plan, fp32_accuracy)
        return
    for variant, dtype in ((INT8, torch.qint8), (FP16, torch.float16)):
        model = quantize_dynamic(copy.deepcopy(plan.model).eval(), {nn.LSTM, nn.Linear}, dtype=dtype)
        yield variant, model, {"scheme": f"dynamic, {variant} weights", "modules": ["LSTM", "Linear"]}


def measure(model: nn.Module, plan: QuantizationPlan, file: str) -> dict:
    return {"file": file, "test_accuracy": plan.evaluate(model),
            "batch_dependence": batch_dependence(model, plan.example_inputs),
            "examples_per_second_1_thread": examples_per_second(model, plan.example_inputs)}


def optimize(name: str, model_dir: Path, ship: str | None = None) -> dict:
    """Write the optimised variants of artifacts `model_dir`, measure every variant, record which
    one ships: the fastest that passes the gate, else fp32."""
    torch.set_num_threads(1)  # the served layout: single-threaded workers
    torch.backends.quantized.engine = BACKEND
    model_dir = Path(model_dir)
    plan = CATALOG[name].training().quantization_plan(model_dir)
    fp32_file = variant_file(name, FP32)
    variants = {FP32: measure(torch.jit.load(model_dir / fp32_file, map_location="cpu"), plan, fp32_file)}
    for variant, model, recipe in candidates(plan, variants[FP32]["test_accuracy"]):
        path = model_dir / variant_file(name, variant)
        torch.jit.save(to_torchscript(model, plan.scheme, plan.example_inputs), path)
        scripted = torch.jit.load(path, map_location="cpu")
        variants[variant] = {**measure(scripted, plan, path.name), **recipe,
                             "torchscript_parity_max_abs_delta": check_parity(model, scripted, [plan.example_inputs])}
        variants[variant]["not_shipped_because"] = verdict(variants[FP32]["test_accuracy"], variants[variant])
    passing = [variant for variant, figures in variants.items() if variant != FP32
               and figures["not_shipped_because"] is None]
    shipped = max(passing, key=lambda variant: variants[variant]["examples_per_second_1_thread"], default=FP32)
    reason = ("the fastest variant that keeps the accuracy and answers each example alone" if shipped != FP32
              else "no optimised variant passed the gate")
    if ship:
        shipped, reason = ship, f"chosen by hand (--ship {ship})"
    metadata_path = model_dir / "metadata.json"
    record = json.loads(metadata_path.read_text())
    record |= {"variants": variants, "shipped_variant": shipped, "shipped_variant_reason": reason,
               "variants_batch_size": len(plan.example_inputs[0])}
    metadata_path.write_text(json.dumps(record, indent=2))
    for variant, figures in variants.items():
        print(f"{name} {variant}: accuracy {figures['test_accuracy']:.2%}, {figures['examples_per_second_1_thread']:,.0f} "
              f"examples/s model-only, batch dependence {figures['batch_dependence']:.1e}"
              + (f"; not shipped: {figures['not_shipped_because']}" if figures.get("not_shipped_because") else ""))
    print(f"{name}: ships {shipped} ({reason})")
    return record


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", choices=sorted(CATALOG))
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    parser.add_argument("--ship", choices=(FP32, INT8, FP16), help="override the gate's choice")
    args = parser.parse_args(argv)
    for name in args.models:
        optimize(name, args.artifacts / name, args.ship)


if __name__ == "__main__":
    main()
