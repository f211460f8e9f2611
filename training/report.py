"""The README's accuracy tables, generated from the files that training and `make verify` wrote.

    python -m training.report [--artifacts artifacts] [--readme README.md]      # `make figures`

For each model of the catalog: the shipped run (artifacts/<model>/: seed 0, or the seed that
training.seeds chose on validation) and every other seed under artifacts/seeds/<model>/seed<N>/, as mean, standard deviation and range over the seeds,
because CPU training is not bit-for-bit repeatable and one seed is one draw. Each table replaces
the text between `<!-- figures:<model> -->` and `<!-- /figures:<model> -->` in the README; the
optimised variants of each model fill `<!-- figures:variants -->`, the last `make verify`
(loadtest/results/verify.json) `<!-- figures:verify -->`, the last
`make docker-test` (loadtest/results/containers.json) `<!-- figures:containers -->` and the last
full `make bench` (loadtest/results/bench.json) `<!-- figures:bench -->` and, from its protocol
runs, `<!-- figures:protocols -->`, and from its generator runs `<!-- figures:generation -->`.
A generator's shipped sample grid and loss curves are copied to training/results/<model>/, where
the README shows them.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
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


def variants_table(artifacts: Path) -> str:
    """Each model's fp32 and optimised variants (training/optimize.py) and which one ships."""
    lines = ["| model | variant | held-out accuracy | model-only examples/s (1 thread) | speed-up | batch dependence | "
             "shipped |", "|---|---|---:|---:|---:|---:|---|"]
    for model in (name for name, entry in CATALOG.items() if not entry.is_generator):
        record = json.loads((artifacts / model / "metadata.json").read_text())
        variants = record.get("variants")
        if not variants:
            continue
        baseline = variants["fp32"]["examples_per_second_1_thread"]
        for variant, figures in variants.items():
            verdict = ("**yes**" if variant == record["shipped_variant"] else
                       f"no: {figures.get('not_shipped_because') or 'fp32 baseline'}")
            lines.append(f"| {model} | {variant} ({figures.get('scheme', 'as trained')}) | "
                         f"{100 * figures['test_accuracy']:.2f} % | {figures['examples_per_second_1_thread']:,.0f} | "
                         f"{figures['examples_per_second_1_thread'] / baseline:.2f}× | "
                         f"{figures['batch_dependence']:.0e} | {verdict} |")
    return "\n".join(lines)


def verify_table(path: Path) -> str:
    report = json.loads(path.read_text())
    lines = [f"| `make verify`, {report['date'][:10]} | held-out samples | labels agree | "
             f"max \\|p_served − p_offline\\| | served accuracy |", "|---|---:|---:|---:|---:|"]
    for row in report["models"]:
        if row.get("compared", "labels agree") == "labels agree":
            lines.append(f"| {row['model']} | {row['count']:,} {row['unit']} | {row['labels_agree']:,} / {row['count']:,} "
                         f"| {row['max_probability_delta']:.1e} | {percent(row['served_accuracy'])} |")
        else:  # a generator: its requests' images, pixel for pixel; accuracy as its judge labels them
            lines.append(f"| {row['model']} | {row['count']:,} requests | images equal: {row['labels_agree']:,} / "
                         f"{row['count']:,} | pixels: {row['max_probability_delta']:.0f} grey levels | "
                         f"{percent(row['served_accuracy'])} as its judge labels them |")
    return "\n".join(lines)


def protocols_table(path: Path) -> str:
    """/predictions vs the Open Inference Protocol's REST and gRPC, from bench.json "transports"."""
    report = json.loads(path.read_text())
    runs = report["transports"]
    first = next(iter(runs["models"].values()))
    lines = [f"Measured {runs['date'][:10]} ({report['machine']['cores']} cores, each model served alone by this "
             f"service; one example per request, {first['concurrency']} callers in a closed loop, one connection "
             f"or gRPC channel each, median of {first['rounds']} alternating rounds of {first['seconds']:g} s; "
             f"`{runs['generator']}`):", "",
             "| model | protocol | req/s | over /predictions | p50 ms | p99 ms | generator CPU | errors |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    names = {"predictions": "`/predictions` (HTTP)", "v2_rest": "v2 REST (JSON)", "v2_grpc": "v2 gRPC (raw)"}
    for name, figures in runs["models"].items():
        lines += [f"| {name} | {names[transport]} | {row['throughput_rps']:,.0f} | {row['over_predictions']:.2f} | "
                  f"{row['p50_ms']:.1f} | {row['p99_ms']:.1f} | {row['generator_cpu_share']:.0%} | {row['errors']} |"
                  for transport, row in figures["transports"].items()]
    return "\n".join(lines)


def generation_table(path: Path) -> str:
    """A generator's images per second served vs in process, from bench.json "generation"."""
    report = json.loads(path.read_text())
    lines = ["| generator | images per request | served images/s (peak) | at concurrency | p50 ms, concurrency 1 | "
             "in-process images/s | served / in-process |", "|---|---:|---:|---:|---:|---:|---:|"]
    for name, figures in report["generation"].items():
        lines += [f"| {name} (measured {figures['date'][:10]}) | {images} | {row['peak_images_per_s']:,.0f} | "
                  f"{row['peak_concurrency']} | {row['p50_ms_at_concurrency_1']:.1f} | "
                  f"{row['inprocess_images_per_s']:,.0f} | {row['served_over_inprocess']:.2f} |"
                  for images, row in figures["images_per_request"].items()]
    return "\n".join(lines)


def publish_generator_figures(artifacts: Path, model: str) -> None:
    published = REPO / "training" / "results" / model
    published.mkdir(parents=True, exist_ok=True)
    for name in ("samples.png", "history.png"):
        shutil.copyfile(artifacts / model / name, published / name)


def bench_table(path: Path) -> str:
    """The README's benchmark tables; every ratio is the bench's own (bench.json "ratios")."""
    report = json.loads(path.read_text())
    machine, ratios = report["machine"], report["ratios"]

    def top(figures: dict, label: str) -> dict:
        return max(figures["servers"][label]["levels"], key=lambda level: level["throughput_rps"])

    def ratio(key: str) -> str:
        if ratios[key] is None:
            return "theirs: none kept the bound"
        return "ours: none kept the bound" if ratios[key] == 0 else f"{ratios[key]:.2f}"

    def at_one(figures: dict, label: str) -> str:
        level = next(lv for lv in figures["servers"][label]["levels"] if lv["concurrency"] == 1)
        return f"{level['p50_ms']:.1f} / {level['p99_ms']:.1f}"

    lines = [f"Full run of {report['date'][:10]}, {machine['cores']} cores {machine['cpu_model']}, each model "
             f"served alone, {report['seconds_per_level']} s per point. Peak throughput, closed loop (wrk, "
             "concurrency 1–64); \"ours\" serves the shipped variant:", "",
             "| model | in-process ceiling | ours | ours / in-process | ours, fp32 model | ours / fp32 | "
             "stock TorchServe | ours / stock | LitServe, best of sweep | ours / LitServe |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        ceiling = max(row["throughput_rps"] for row in figures["inprocess"])
        lines.append(
            f"| {name} ({figures['unit']}/s) | {ceiling:,.0f} | {top(figures, 'ours')['throughput_rps']:,.0f} | "
            f"{ratios[f'{name}_ours_over_inprocess']:.2f} | {top(figures, 'fp32')['throughput_rps']:,.0f} | "
            f"{ratios[f'{name}_ours_over_fp32']:.2f} | {top(figures, 'stock')['throughput_rps']:,.0f} | "
            f"{ratios[f'{name}_ours_over_stock']:.2f} | {top(figures, 'litserve')['throughput_rps']:,.0f} | "
            f"{ratios[f'{name}_ours_over_litserve']:.2f} |")
    lines += ["", "Latency: the latency-bounded throughput (MLPerf server scenario: the highest rate of open-loop "
              "Poisson arrivals whose p99 stays under the bound), p50 / p99 ms at concurrency 1, the worst "
              "p99 / p50 over concurrency 1–64, and open-loop arrivals at 70 % of ours' peak:", "",
              "| model | p99 bound | latency-bounded req/s: ours | stock | LitServe | ours / stock | ours / LitServe | "
              "c=1 p50 / p99: ours | stock | ours: worst p99 / p50 | ours at 70 %: p50 / p99 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for name, figures in report["models"].items():
        servers = figures["servers"]
        bounded = {label: servers[label]["latency_bounded"]["rate_rps"] for label in ("ours", "stock", "litserve")}
        worst = max(level["p99_ms"] / level["p50_ms"] for level in servers["ours"]["levels"])
        paced = servers["ours"]["paced_at_70pct_of_peak"]
        lines.append(
            f"| {name} | {figures['latency_bound_ms']:g} ms | {bounded['ours']:,.0f} | {bounded['stock']:,.0f} | "
            f"{bounded['litserve']:,.0f} | {ratio(f'{name}_bounded_ours_over_stock')} | "
            f"{ratio(f'{name}_bounded_ours_over_litserve')} | {at_one(figures, 'ours')} | "
            f"{at_one(figures, 'stock')} | {worst:.1f} | {paced['p50_ms']:.1f} / {paced['p99_ms']:.1f} |")
    lines += ["", "Microseconds per example in process (one thread, the served batch size), and the LitServe "
              "configuration that won its sweep:", "",
              "| model | decode | preprocess | model | postprocess | LitServe's best |", "|---|---:|---:|---:|---:|---|"]
    for name, figures in report["models"].items():
        stages = figures["stages_us"]
        lines.append(f"| {name} | {stages['decode']:,.0f} | {stages['preprocess']:,.0f} | {stages['model']:,.0f} | "
                     f"{stages['postprocess']:,.0f} | {figures['servers']['litserve']['config']} |")
    if "cold_start" in report:
        cold = report["cold_start"]
        median = cold["median"]
        lines += ["", f"Cold start, {', '.join(cold['models'])} in one server, start to all READY (median of "
                  f"{len(cold['runs'])}): **{median['total_s']:.1f} s** = entrypoint and JVM start "
                  f"{median['frontend']:.1f} s + frontend init {median['frontend_init']:.1f} s + worker Python and "
                  f"torch imports {median['worker_imports']:.1f} s + handler and model load "
                  f"{median['model_load']:.1f} s + readiness probe {median['readiness']:.1f} s."]
    lines.append("")
    for name, figures in report["models"].items():
        servers = figures["servers"]
        door = servers["ours"]["through_gateway"]
        lines.append(f"- {name}: through the pod's gateway {door['gateway_rps']:,.0f} vs {door['direct_rps']:,.0f} "
                     f"direct ({door['gateway_over_direct']:.2f}).")
        if "previous" in servers:
            lines.append(f"- {name}: this model vs the previous one (`--previous`), same server, same run: peak "
                         f"{top(figures, 'ours')['throughput_rps']:,.0f} vs "
                         f"{top(figures, 'previous')['throughput_rps']:,.0f} {figures['unit']}/s "
                         f"({ratios[f'{name}_ours_over_previous']:.2f}).")
        for label in ("ours", "previous"):
            long = servers.get(label, {}).get("long_documents")
            if long:
                lines.append(f"- {name} ({label}), long requests of {long['body_bytes_mean']:,.0f} bytes: "
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
        if CATALOG[model].is_generator:
            publish_generator_figures(args.artifacts, model)
        print(generated + "\n")
    readme = update(readme, "variants", variants_table(args.artifacts))
    verified = REPO / "loadtest" / "results" / "verify.json"
    if verified.exists():
        readme = update(readme, "verify", verify_table(verified))
    containers = REPO / "loadtest" / "results" / "containers.json"
    if containers.exists():
        readme = update(readme, "containers", containers_table(containers))
    benchmarked = REPO / "loadtest" / "results" / "bench.json"
    bench = json.loads(benchmarked.read_text()) if benchmarked.exists() else {}
    if bench.get("mode") == "full":
        readme = update(readme, "bench", bench_table(benchmarked))
        if "transports" in bench:
            readme = update(readme, "protocols", protocols_table(benchmarked))
        if bench.get("generation"):
            readme = update(readme, "generation", generation_table(benchmarked))
    args.readme.write_text(readme)
    print(f"updated {args.readme}")


if __name__ == "__main__":
    main()
