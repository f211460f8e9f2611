"""Package an exported model into model_store/<name>.mar and record its checksum.

    python -m training.archive mnist [--artifacts artifacts] [--store model_store]
    python -m training.archive mnist --train-fast --artifacts artifacts/fast --store model_store/fast

The .mar holds the shipped TorchScript file (int8 where it passed the accuracy gate of
training/optimize.py, else fp32), the handler, the whole `handlers` package (so the handler
imports the same transforms training used), every JSON the export wrote (metadata,
vocabularies, class names), oip_metadata.json (the handler's Open Inference Protocol signature,
which the patched frontend serves as the model's v2 metadata) and handlers/config/<name>.yaml as
model-config.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from training.catalog import CATALOG
from training.optimize import shipped_file, variant_file

REPO = Path(__file__).resolve().parents[1]
CHECKSUMS = "SHA256SUMS"


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def record_checksum(store: Path, mar: Path) -> None:
    """Keep one `<sha256>  <file>` line per archive in store/SHA256SUMS (sha256sum format)."""
    manifest = store / CHECKSUMS
    lines = [line for line in (manifest.read_text().splitlines() if manifest.exists() else [])
             if not line.endswith(f"  {mar.name}")]
    lines.append(f"{sha256_file(mar)}  {mar.name}")
    manifest.write_text("\n".join(sorted(lines, key=lambda line: line.split()[-1])) + "\n")


def archive(name: str, artifacts: Path, store: Path, model_config: Path | None = None,
            handler: Path | None = None, version: str = "1.0", variant: str | None = None) -> Path:
    """`variant` ("fp32", "int8") overrides the one the accuracy gate chose (the bench's fp32 baseline)."""
    model_dir = artifacts / name
    serialized = model_dir / variant_file(name, variant) if variant else shipped_file(model_dir, name)
    if not serialized.exists():
        raise SystemExit(f"{serialized} is missing: run `make train` first")
    store.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as staging:
        staging = Path(staging)
        # The archiver copies a folder's *contents*, so stage handlers/ one level down.
        shutil.copytree(REPO / "handlers", staging / "handlers",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "config"))
        extra = [str(staging)] + [str(path) for path in sorted(model_dir.glob("*.json"))]
        # (not the test-only variants of tests/integration/test_faults.py, nor a model without v2)
        if name in CATALOG and CATALOG[name].speaks_v2:
            oip_metadata = staging / "oip_metadata.json"
            oip_metadata.write_text(json.dumps(CATALOG[name].handler_class().signature.metadata(), indent=2))
            extra.append(str(oip_metadata))
        subprocess.run([
            str(Path(sys.executable).with_name("torch-model-archiver")),
            "--model-name", name, "--version", version,
            "--serialized-file", str(serialized),
            "--handler", str(handler or REPO / "handlers" / f"{name}.py"),
            "--extra-files", ",".join(extra),
            "--config-file", str(model_config or REPO / "handlers" / "config" / f"{name}.yaml"),
            "--export-path", str(store), "--force",
        ], check=True)
    mar = store / f"{name}.mar"
    record_checksum(store, mar)
    print(f"wrote {mar} ({mar.stat().st_size / 1e6:.1f} MB)")
    return mar


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+")
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    parser.add_argument("--store", type=Path, default=REPO / "model_store")
    parser.add_argument("--train-fast", action="store_true",
                        help="first train each model missing from --artifacts with its small, fast test configuration")
    args = parser.parse_args(argv)
    for name in args.models:
        if args.train_fast and not (args.artifacts / name / f"{name}.torchscript.pt").exists():
            CATALOG[name].train_fast(args.artifacts / name)
        archive(name, args.artifacts, args.store)


if __name__ == "__main__":
    main()
