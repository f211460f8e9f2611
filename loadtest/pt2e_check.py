"""PT2E (torchao) against the shipped torch.ao int8 TorchScript file, for one model: the
measurement behind README "Optimised models" (why the deprecated path ships).

    make pt2e-check        # torchao into data_cache/torchao (--no-deps), then this for every model
    PYTHONPATH=data_cache/torchao:. .venv/bin/python -m loadtest.pt2e_check <model>   # static int8 models only

Same fp32 model, calibration and held-out data as training/optimize.py (the model's
quantization_plan). PT2E: strict export (non-strict export of torchvision's BasicBlock, which
calls one ReLU twice, fails in prepare_pt2e) -> X86InductorQuantizer (per-channel defaults) ->
calibrate -> convert; then (a) torch.compile with freezing, (b) an AOTInductor package (fixed
batch 8; a dynamic batch is also built and checked for correctness), (c) torchao's compile-free
x86 lowering. One thread: accuracy, images/s at batch 8 and 1, compile and load times, batch
dependence. Writes loadtest/results/pt2e/<name>.json; packages go to a temporary folder.
"""

import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
from pathlib import Path

import torch
import torchao
import torchao.quantization.pt2e.quantizer.x86_inductor_quantizer as xiq
from torch import nn
from torchao.quantization.pt2e.lowering import lower_pt2e_quantized_to_x86
from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

from training.catalog import CATALOG
from training.optimize import batch_dependence, examples_per_second

name = sys.argv[1]
REPO = Path(__file__).resolve().parents[1]
OUT = Path(tempfile.mkdtemp(prefix=f"pt2e-{name}-"))
RESULT = REPO / "loadtest" / "results" / "pt2e" / f"{name}.json"
RESULT.parent.mkdir(parents=True, exist_ok=True)
R = {"name": name, "torch": torch.__version__, "errors": {}}


def save():
    RESULT.write_text(json.dumps(R, indent=2, default=str) + "\n")


def err(key, e):
    R["errors"][key] = f"{type(e).__name__}: {str(e)[:1500]}"
    traceback.print_exc()
    save()


torch.set_num_threads(1)
torch.backends.quantized.engine = "x86"
R["torchao"] = torchao.__version__

art = REPO / "artifacts" / name
t = time.perf_counter()
plan = CATALOG[name].training().quantization_plan(art)
R["plan_s"] = time.perf_counter() - t
if plan.scheme != "static":  # PT2E's x86 quantizer is static int8: the CNNs' path, not the LSTM's
    print(f"{name}: {plan.scheme} quantisation, not compared")
    sys.exit(0)
model = plan.model.eval()
x = plan.example_inputs[0]
R["example_shape"] = list(x.shape)
R["calibration_batches"] = len(plan.calibration)


class Padded:
    """A fixed-batch-8 callable serving 1..8 rows: pad with copies of row 0, drop the padding."""

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, x):
        n = len(x)
        return self.fn(torch.cat([x, x[:1].expand(8 - n, *x.shape[1:])]) if n < 8 else x)[:n]


class Chunked(nn.Module):
    """Feed a callable at most 8 rows at a time (the served batch range 1..8)."""

    def __init__(self, fn):
        super().__init__()
        self.fn = [fn]  # hidden from .eval(): exported models refuse it

    def forward(self, x):
        return torch.cat([self.fn[0](x[i : i + 8]) for i in range(0, len(x), 8)])


variants = {}
variants["fp32_torchscript"] = torch.jit.load(art / f"{name}.torchscript.pt", map_location="cpu")
variants["ao_int8_torchscript"] = torch.jit.load(art / f"{name}.int8.torchscript.pt", map_location="cpu")

# ---- PT2E: export -> prepare -> calibrate -> convert
batch = torch.export.Dim("batch", min=1, max=8)
try:
    t = time.perf_counter()
    ep = torch.export.export(
        model, (x,), dynamic_shapes=({0: batch},), strict=True
    )  # non-strict: shared ReLU -> "more than one output node"
    R["export_dynamic_batch"] = True
except Exception as e:
    err("export_dynamic", e)
    R["export_dynamic_batch"] = False
    ep = torch.export.export(model, (x,), strict=True)
R["export_s"] = time.perf_counter() - t
quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
t = time.perf_counter()
prepared = prepare_pt2e(ep.module(), quantizer)
with torch.no_grad():
    for inputs in plan.calibration:
        for i in range(0, len(inputs), 8):
            prepared(inputs[i : i + 8])
converted = convert_pt2e(prepared)
R["quantize_s"] = time.perf_counter() - t
save()

acc = {}
with torch.no_grad():
    t = time.perf_counter()
    acc["fp32_eager"] = plan.evaluate(model)
    acc["ao_int8_torchscript"] = plan.evaluate(variants["ao_int8_torchscript"])
    acc["pt2e_converted_reference"] = plan.evaluate(Chunked(converted))
    R["eval3_s"] = time.perf_counter() - t
R["accuracy"] = acc
save()

torch._inductor.config.freezing = True  # the x86 int8 fusion/weight-prepack passes are freezing passes
# ---- (a) torch.compile, first call = compile
try:
    with torch.no_grad():
        compiled = torch.compile(converted)
        t = time.perf_counter()
        compiled(x)
        R["torch_compile_first_call_s"] = time.perf_counter() - t
        t = time.perf_counter()
        compiled(x)
        R["torch_compile_second_call_s"] = time.perf_counter() - t
        R["torch_compile_max_abs_delta_vs_converted_b8"] = (compiled(x) - converted(x)).abs().max().item()
    R["torch_compile_other_batch"] = {}
    for b in (3, 1):
        try:
            with torch.no_grad():
                t = time.perf_counter()
                out = compiled(x[:b])
                R["torch_compile_other_batch"][b] = {
                    "first_call_s": time.perf_counter() - t,
                    "max_abs_delta": (out - converted(x[:b])).abs().max().item(),
                }
        except Exception as e:
            R["torch_compile_other_batch"][b] = f"{type(e).__name__}: {str(e)[:600]}"
    variants["pt2e_torch_compile"] = compiled
except Exception as e:
    err("torch_compile", e)
save()

# ---- (b) AOTInductor package
pkg = str(OUT / f"{name}.pt2e_int8.pt2")
try:
    with torch.no_grad():
        t = time.perf_counter()
        ep2 = torch.export.export(converted, (x,))  # fixed batch 8: the dynamic-batch package computes wrong outputs
        R["aoti_reexport_s"] = time.perf_counter() - t
        t = time.perf_counter()
        torch._inductor.aoti_compile_and_package(ep2, package_path=pkg, inductor_configs={"freezing": True})
        R["aoti_compile_s"] = time.perf_counter() - t
    R["aoti_package_bytes"] = os.path.getsize(pkg)
    t = time.perf_counter()
    aoti = torch._inductor.aoti_load_package(pkg)
    aoti(x)
    R["aoti_load_first_call_same_process_s"] = time.perf_counter() - t
    variants["pt2e_aoti"] = aoti
except Exception as e:
    err("aoti", e)
save()

# ---- bonus: torchao's compile-free lowering (freezing passes, eager onednn ops, no C++ compiler)
try:
    t = time.perf_counter()
    with torch.no_grad():
        lowered = lower_pt2e_quantized_to_x86(converted, (x,))
        lowered(x)
    R["lowered_s"] = time.perf_counter() - t
    variants["pt2e_lowered_no_compile"] = lowered
except Exception as e:
    err("lowered", e)
save()

# ---- accuracy / batch sizes of the AOTI package
if "pt2e_aoti" in variants:
    aoti = variants["pt2e_aoti"]
    with torch.no_grad():
        try:
            acc["pt2e_aoti_b8_padded"] = plan.evaluate(Chunked(Padded(aoti)))
            ref = converted(x)
            R["aoti_max_abs_delta_vs_converted_b8"] = (aoti(x) - ref).abs().max().item()
            R["aoti_padded_batch_dependence"] = batch_dependence(Padded(aoti), (x,))
        except Exception as e:
            err("aoti_eval", e)
    try:
        with torch.no_grad():
            aoti(torch.cat([x, x[:1]]))  # batch 9, above the Dim max
        R["aoti_batch9"] = "accepted"
    except Exception as e:
        R["aoti_batch9"] = f"{type(e).__name__}: {str(e)[:200]}"
# the dynamic-batch AOTI package, for correctness only
try:
    with torch.no_grad():
        ep3 = torch.export.export(converted, (x,), dynamic_shapes=({0: batch},))
        t = time.perf_counter()
        dpkg = torch._inductor.aoti_compile_and_package(
            ep3, package_path=str(OUT / f"{name}.pt2e_int8.dynamic.pt2"), inductor_configs={"freezing": True}
        )
        R["aoti_dynamic_compile_s"] = time.perf_counter() - t
        dyn = torch._inductor.aoti_load_package(dpkg)
        R["aoti_dynamic_max_abs_delta_vs_converted"] = {
            b: (dyn(x[:b]) - converted(x[:b])).abs().max().item() for b in (1, 3, 8)
        }
        acc["pt2e_aoti_dynamic_batch"] = plan.evaluate(Chunked(dyn))
    with torch.no_grad():
        ep4 = torch.export.export(converted, (x,), dynamic_shapes=({0: batch},))
        t = time.perf_counter()
        npkg = torch._inductor.aoti_compile_and_package(
            ep4, package_path=str(OUT / f"{name}.pt2e_int8.dynamic_nofreeze.pt2"), inductor_configs={"freezing": False}
        )
        R["aoti_dynamic_nofreeze_compile_s"] = time.perf_counter() - t
        nf = torch._inductor.aoti_load_package(npkg)
        R["aoti_dynamic_nofreeze_max_abs_delta_vs_converted"] = {
            b: (nf(x[:b]) - converted(x[:b])).abs().max().item() for b in (1, 3, 8)
        }
        variants["pt2e_aoti_dynamic_nofreeze"] = nf
except Exception as e:
    err("aoti_dynamic", e)
save()
R["batch_dependence_ao_int8"] = batch_dependence(variants["ao_int8_torchscript"], (x,))
if "pt2e_lowered_no_compile" in variants:
    with torch.no_grad():
        try:
            acc["pt2e_lowered_no_compile"] = plan.evaluate(Chunked(variants["pt2e_lowered_no_compile"]))
        except Exception as e:
            err("lowered_eval", e)
save()

# ---- throughput: 1 thread, batch 8, 3 interleaved rounds, median
rounds = {k: [] for k in variants}
for r in range(3):
    for k, m in variants.items():
        try:
            with torch.no_grad():
                rounds[k].append(examples_per_second(m, (x,), seconds=1.5))
        except Exception as e:
            err(f"speed_{k}", e)
R["images_per_s_rounds"] = rounds
R["images_per_s_median"] = {k: statistics.median(v) for k, v in rounds.items() if v}
b1 = {}
try:  # a static batch-1 package: what serving batch 1 without padding would need (one package per size)
    with torch.no_grad():
        t = time.perf_counter()
        p1 = torch._inductor.aoti_compile_and_package(
            torch.export.export(converted, (x[:1],)),
            package_path=str(OUT / f"{name}.pt2e_int8.b1.pt2"),
            inductor_configs={"freezing": True},
        )
        R["aoti_b1_compile_s"] = time.perf_counter() - t
        a1 = torch._inductor.aoti_load_package(p1)
        R["aoti_b1_max_abs_delta"] = (a1(x[:1]) - converted(x[:1])).abs().max().item()
        b1["pt2e_aoti_static_b1_package"] = examples_per_second(a1, (x[:1],), seconds=1.0)
except Exception as e:
    err("aoti_b1", e)
for k, m in variants.items():
    try:
        with torch.no_grad():
            b1[k] = examples_per_second(Padded(m) if k == "pt2e_aoti" else m, (x[:1],), seconds=1.0)
    except Exception as e:
        b1[k] = f"{type(e).__name__}: {str(e)[:300]}"
R["images_per_s_batch1"] = b1
save()
shutil.rmtree(OUT, ignore_errors=True)
print(json.dumps(R, indent=2, default=str))
