"""Train a model for `make train`: seed 0, or for a model whose catalog entry ships the best of
several seeds (training not repeatable on the CPU), every seed, keeping the best on validation.

    python -m training.seeds sentiment [--jobs 2]

Seeds go to artifacts/seeds/<model>/seed<N>/ (a finished one is not trained again; `make figures`
reads them for the spread); the chosen one is copied to artifacts/<model>/, what `make archive`
packs, and its metadata.json says which seeds it was chosen from and by what.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from training.catalog import CATALOG, REPO


def seed_folder(artifacts: Path, model: str, seed: int) -> Path:
    return artifacts / "seeds" / model / f"seed{seed}"


def train_seed(model: str, seed: int, out: Path, arguments: tuple[str, ...] = (), log: Path | None = None) -> dict:
    """metadata.json of a training run into `out` (with extra `arguments`), trained only if not finished;
    its output goes to `log` if given."""
    if not (out / "metadata.json").exists():
        command = [sys.executable, "-m", CATALOG[model].training_module, *arguments, "--seed", str(seed),
                   "--out", str(out)]
        with open(log, "w") if log else contextlib.nullcontext() as output:
            subprocess.run(command, check=True, cwd=REPO, stdout=output, stderr=subprocess.STDOUT if log else None)
    return json.loads((out / "metadata.json").read_text())


def main(argv=None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", choices=sorted(CATALOG))
    parser.add_argument("--jobs", type=int, default=2, help="seeds trained at once")
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    args = parser.parse_args(argv)
    entry, shipped = CATALOG[args.model], args.artifacts / args.model
    if entry.ship_best_of == 1:
        train_seed(args.model, 0, shipped)
        return shipped
    seeds = range(entry.ship_best_of)
    with ThreadPoolExecutor(args.jobs) as pool:
        records = list(pool.map(lambda seed: train_seed(args.model, seed, seed_folder(args.artifacts, args.model,
                                                                                       seed)), seeds))
    scores = {seed: record["validation"]["mean_domain_accuracy"] for seed, record in zip(seeds, records)}
    best = max(scores, key=scores.get)
    shutil.rmtree(shipped, ignore_errors=True)
    shutil.copytree(seed_folder(args.artifacts, args.model, best), shipped)
    record = records[best] | {"shipped_seed": {"seed": best, "criterion": "validation accuracy, mean over domains",
                                               "validation_by_seed": scores}}
    (shipped / "metadata.json").write_text(json.dumps(record, indent=2))
    print(f"{args.model}: shipped seed {best} of {list(seeds)} (validation {scores})")
    return shipped


if __name__ == "__main__":
    main()
