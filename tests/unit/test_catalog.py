"""The model catalog is complete, and it is the only list of models; layers import one way."""

from __future__ import annotations

import ast
import inspect
import re
import subprocess
from pathlib import Path

import pytest

from handlers.base import ServingHandler
from tests.hostile_corpus import CASE_BUILDERS
from training.catalog import CATALOG, REPO

# Files that name several models on purpose; anything else that does is keeping its own list.
NAMES_SEVERAL_MODELS = {
    "tests/heldout.py": "the tests' held-out helpers, one per dataset",
    "tests/unit/test_catalog.py": "this test",
    "tests/unit/test_handler_metrics.py": "checks metrics are labelled by model, so it needs two",
    "tests/integration/test_handler_metrics.py": "checks metrics are labelled by model, so it needs two",
    "loadtest/locustfile.py": "a usage example in its docstring",
    # Their parity tests iterate the catalog; the rest test one model's own v2 features (ResNet's
    # top-k parameter, texts vs images as BYTES elements).
    "tests/unit/test_oip.py": "each model's own v2 outputs and options",
    "tests/integration/test_protocols.py": "each model's own v2 features over real clients",
    # The generator's judge is the mnist classifier: its network gives the features it is judged on.
    "training/digitgen.py": "the generator and its judge",
    "tests/unit/test_digitgen.py": "the generator and its judge",
}
DOCUMENTATION = re.compile(r"(^|/)README\.md$|\.md$|^loadtest/results/|\.(png|json|svg)$")


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_catalog_entry_has_its_files_and_hooks(name):
    entry = CATALOG[name]
    assert (REPO / "handlers" / f"{name}.py").is_file() and entry.handler.startswith(f"handlers.{name}:")
    assert issubclass(entry.handler_class(), ServingHandler)
    config = entry.model_config()
    assert {"minWorkers", "maxWorkers", "batchSize", "maxBatchDelay", "responseTimeout", "handler"} <= set(config)
    training = entry.training()
    assert Path(training.__file__) == REPO / "training" / f"{name}.py"
    kind_hooks = {"classifier": ("offline_heldout", "quantization_plan"), "generator": ("offline_generator",)}
    for hook in ("main", "heldout_requests", "reported_figures", *kind_hooks[entry.kind]):
        assert callable(getattr(training, hook, None)), f"training/{name}.py has no {hook}()"
    if entry.is_generator:  # judged by a classifier of the catalog, which trains first (Makefile, fixtures)
        assert entry.judge in CATALOG and not CATALOG[entry.judge].is_generator
        assert list(CATALOG).index(entry.judge) < list(CATALOG).index(name)
    assert "argv" in inspect.signature(training.main).parameters
    assert entry.input_kind in CASE_BUILDERS
    assert entry.unit and entry.fast_training_args and "--out" not in entry.fast_training_args
    assert entry.endpoint == f"/predictions/{name}"


@pytest.mark.parametrize("name", list(CATALOG))
def test_every_model_has_held_out_requests_with_true_labels(name):
    samples = CATALOG[name].heldout_requests(4)
    assert len(samples) == 4 and len({sample.body for sample in samples}) == 4
    assert all(sample.body and sample.content_type and sample.expected for sample in samples)


def test_the_makefile_takes_its_models_from_the_catalog():
    listed = subprocess.run(["make", "-s", "-f", "-", "print-models"], cwd=REPO, capture_output=True, text=True,
                            input=(REPO / "Makefile").read_text() + "\nprint-models:\n\t@echo $(MODELS)\n").stdout
    assert listed.split() == list(CATALOG)


def tracked_files() -> list[str]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, text=True, check=True).stdout.split()
    return [path for path in listed if (REPO / path).is_file() and not DOCUMENTATION.search(path)]


def models_named(text: str) -> set[str]:
    return {name for name in CATALOG if re.search(rf"(?<![\w-]){name}(?![\w-])", text)}


def test_no_file_but_the_catalog_keeps_a_list_of_models():
    lists = {}
    for path in tracked_files():
        if path == "training/catalog.py" or path in NAMES_SEVERAL_MODELS:
            continue
        own = {name for name in CATALOG if name in Path(path).stem}  # a model's own files name it
        named = models_named((REPO / path).read_text(errors="replace")) - own
        if len(named | own) >= 2 and named:
            lists[path] = sorted(named)
    assert not lists, f"these files name several models; read training/catalog.py instead: {lists}"


def test_the_list_check_catches_a_model_list():
    assert models_named("MODELS := mnist sentiment resnet digitgen") == set(CATALOG)
    assert models_named("fashion-mnist-target and training.data.fashion_mnist") == set()


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


@pytest.mark.parametrize("layer, forbidden", [("handlers", ("training", "loadtest", "tests", "deploy")),
                                              ("deploy", ("training", "loadtest", "tests"))])
def test_production_code_imports_neither_training_nor_load_tests(layer, forbidden):
    wrong = {str(path.relative_to(REPO)): sorted(module for module in imported_modules(path)
                                                 if module.split(".")[0] in forbidden)
             for path in (REPO / layer).rglob("*.py")}
    assert not {path: modules for path, modules in wrong.items() if modules}


def test_the_import_check_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from training.data import mnist\n    import loadtest.bench\n")
    assert imported_modules(module) == {"training.data", "loadtest.bench"}
