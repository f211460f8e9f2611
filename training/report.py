"""The README's accuracy tables, generated from the files that training and `make verify` wrote.

    python -m training.report [--artifacts artifacts] [--readme README.md]      # `make figures`

For each model of the catalog: the shipped run (artifacts/<model>/: seed 0, or the seed that
training.seeds chose on validation) and every other seed under artifacts/seeds/<model>/seed<N>/, as mean, standard deviation and range over the seeds,
because CPU training is not bit-for-bit repeatable and one seed is one draw. Each table replaces
the text between `<!-- figures:<model> -->` and `<!-- /figures:<model> -->` in the README; the
last `make verify` (loadtest/results/verify.json) fills `<!-- figures:verify -->`, the last
`make docker-test` (loadtest/results/containers.json) `<!-- figures:containers -->` and the last
full `make bench` (loadtest/results/bench.json) `<!-- figures:bench -->`.
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np

from training.catalog import CATALOG, REPO


def seed_records(artifacts: Path, model: str) -> list[tuple[int, dict]]:
    """(seed, metadata) of the shipped run and of every other seed, shipped first."""
    paths = [artifacts / model / "metadata.json", *sorted((artifacts / "seeds" / model).glob("seed*/metadata.json"))]
    records = [json.loads(path.read_text()) for path in paths if path.exists()]
    seeded = [(record["train_config"]["seed"] if "train_config" in record else record["plan"]["seed"], record)
              for record in records]
    return seeded[:1] + [(seed, record) for seed, record in seeded[1:] if seed != seeded[0][0]]


def percent(value: float) -> str:
    return f"{100 * value:.1f} %"


def points(value: float) -> str:
    return f"{100 * value:+.1f} points"


def table(model: str, records: list[tuple[int, dict]]) -> str:
    training = CATALOG[model].training()
    if hasattr(training, "figures_table"):
        return training.figures_table(records)
    figures = training.reported_figures
    shipped_seed, shipped = records[0]
    # Figures added to training later are shown once every seed's run has them.
    names = [name for name in figures(shipped) if all(name in figures(record) for _, record in records)]
    values = {name: [figures(record)[name] for _, record in records] for name in names}
    seeds = ", ".join(str(seed) for seed, _ in records)
    lines = [f"| {model}: held-out figure | shipped (seed {shipped_seed}) | mean ± sd over seeds {seeds} | range |",
             "|---|---:|---:|---:|"]
    for name, series in values.items():
        series, shown = np.array(series), points if "points" in name else percent
        lines.append(f"| {name} | **{shown(series[0])}** | {shown(series.mean())} ± {100 * series.std():.1f} | "
                     f"{shown(series.min())} – {shown(series.max())} |")
    return "\n".join(lines)


def verify_table(path: Path) -> str:
    report = json.loads(path.read_text())
    lines = [f"| `make verify`, {report['date'][:10]} | held-out samples | labels agree | "
             f"max \\|p_served − p_offline\\| | served accuracy |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {row['model']} | {row['count']:,} {row['unit']} | {row['labels_agree']:,} / {row['count']:,} | "
              f"{row['max_probability_delta']:.1e} | {percent(row['served_accuracy'])} |" for row in report["models"]]
    return "\n".join(lines)


def bench_table(path: Path) -> str:
    report = json.loads(path.read_text())
    machine = report["machine"]
    lines = [f"Full run of {report['date'][:10]}, {machine['cores']} cores {machine['cpu_model']}, "
             f"{report['load_generator']}, {report['seconds_per_level']} s per point:", "",
             "| model | in-process ceiling | this service (peak) | served / in-process | stock TorchServe | "
             "LitServe | p50 / p99 when paced | through the pod's gateway | cold start |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        def peak(label):
            return max(level["throughput_rps"] for level in figures["servers"][label]["levels"])
        ratios = {baseline: report["ratios"][f"{name}_ours_over_{baseline}"] for baseline in
                  ("inprocess", "stock", "litserve")}
        paced = figures["servers"]["ours"]["paced_at_70pct_of_peak"]
        door = figures["servers"]["ours"]["through_gateway"]
        lines.append(
            f"| {name} ({figures['unit']}/s) | {max(row['throughput_rps'] for row in figures['inprocess']):,.0f} | "
            f"{peak('ours'):,.0f} | {ratios['inprocess']:.2f} | {peak('stock'):,.0f} (ours {ratios['stock']:.2f}×) | "
            f"{peak('litserve'):,.0f} (ours {ratios['litserve']:.2f}×) | "
            f"{paced['p50_ms']:.0f} / {paced['p99_ms']:.0f} ms at {paced['fraction_of_peak']:.0%} of peak | "
            f"{door['gateway_rps']:,.0f} vs {door['direct_rps']:,.0f} direct ({door['gateway_over_direct']:.2f}) | "
            f"{figures['servers']['ours']['cold_start_s']:.1f} s |")
    for name, figures in report["models"].items():
        servers = figures["servers"]
        if "previous" in servers:
            lines += ["", f"{name}, this model vs the previous one (`--previous`), same server, same run: peak "
                      f"{peak('ours'):,.0f} vs {peak('previous'):,.0f} {figures['unit']}/s "
                      f"({report['ratios'][f'{name}_ours_over_previous']:.2f})."]
        for label in ("ours", "previous"):
            long = servers.get(label, {}).get("long_documents")
            if long:
                lines.append(f"{name} ({label}), long requests of {long['body_bytes_mean']:,.0f} bytes: "
                             f"p50 {long['alone']['p50_ms']:.0f} ms, p95 {long['alone']['p95_ms']:.0f} ms alone; "
                             f"{long['at_peak_concurrency']['throughput_rps']:.1f} {figures['unit']}/s at "
                             f"{long['at_peak_concurrency']['concurrency']} connections.")
    return "\n".join(lines)


def containers_table(path: Path) -> str:
    record = json.loads(path.read_text())
    def minutes(seconds: float) -> str:
        return f"{int(seconds // 60)} min {int(seconds % 60)} s"

    lines = [f"Measured by `make docker-test` ({record['variant']} variant) on {record['date']}, {record['cores']} "
             f"cores: build {minutes(record['build_seconds'])}, tests {minutes(record['test_seconds'])}.", "",
             "| image | size |", "|---|---:|"]
    lines += [f"| `{image}` | {size / 1e9:.2f} GB |" for image, size in record["images"].items()]
    return "\n".join(lines)


def update(readme: str, model: str, generated: str) -> str:
    pattern = re.compile(rf"(<!-- figures:{model} -->\n).*?(<!-- /figures:{model} -->)", re.S)
    if not pattern.search(readme):
        raise SystemExit(f"README has no <!-- figures:{model} --> ... <!-- /figures:{model} --> markers")
    return pattern.sub(lambda match: match.group(1) + generated + "\n" + match.group(2), readme)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--artifacts", type=Path, default=REPO / "artifacts")
    parser.add_argument("--readme", type=Path, default=REPO / "README.md")
    args = parser.parse_args(argv)
    readme = args.readme.read_text()
    for model in CATALOG:
        records = seed_records(args.artifacts, model)
        if not records:
            raise SystemExit(f"no {args.artifacts / model}/metadata.json: run `make train` first")
        generated = table(model, records)
        readme = update(readme, model, generated)
        print(generated + "\n")
    verified = REPO / "loadtest" / "results" / "verify.json"
    if verified.exists():
        readme = update(readme, "verify", verify_table(verified))
    containers = REPO / "loadtest" / "results" / "containers.json"
    if containers.exists():
        readme = update(readme, "containers", containers_table(containers))
    benchmarked = REPO / "loadtest" / "results" / "bench.json"
    if benchmarked.exists() and json.loads(benchmarked.read_text())["mode"] == "full":
        readme = update(readme, "bench", bench_table(benchmarked))
    args.readme.write_text(readme)
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
