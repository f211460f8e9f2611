"""`make loadtest` and `make bench`, run for a few seconds against real servers: outputs complete
and well-formed. Speed is never asserted here; the numbers come from `make bench BENCH_MODE=full`."""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import subprocess

import pytest
from PIL import Image

from loadtest import bench
from tests.conftest import REPO
from training.catalog import CATALOG


def run_locust(server, tmp_path, host: str, extra_env: dict | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO), "LOADTEST_MIX": "mnist=1",
           "LOADTEST_KEY_FILE": str(server.key_file), **(extra_env or {})}
    return subprocess.run(
        [str(REPO / ".venv" / "bin" / "locust"), "-f", str(REPO / "loadtest" / "locustfile.py"), "--headless",
         "--host", host, "--users", "4", "--spawn-rate", "4", "--run-time", "4s", "--stop-timeout", "2",
         "--only-summary", "--csv", str(tmp_path / "run"), "--html", str(tmp_path / "run.html")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_locust_run_sends_held_out_images_with_the_token_and_reports(server, tmp_path):
    result = run_locust(server, tmp_path, server.inference_url)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = {row["Name"]: row for row in csv.DictReader(open(tmp_path / "run_stats.csv"))}
    assert int(rows["/predictions/mnist"]["Request Count"]) > 0
    assert int(rows["Aggregated"]["Failure Count"]) == 0
    assert (tmp_path / "run.html").stat().st_size > 0
    assert "load test summary" in result.stdout and "/predictions/mnist" in result.stdout


def test_locust_refuses_a_target_that_is_not_loopback(server, tmp_path):
    result = run_locust(server, tmp_path, "http://192.0.2.1:8080")  # TEST-NET-1: never a real host
    assert result.returncode != 0 and "refusing to load-test" in result.stderr
    assert not (tmp_path / "run_stats.csv").exists() or all(
        int(row["Request Count"]) == 0 for row in csv.DictReader(open(tmp_path / "run_stats.csv")))


def numbers(tree, path=""):
    """(path, value) for every number in a JSON tree."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for index, value in enumerate(tree):
            yield from numbers(value, f"{path}[{index}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


@pytest.fixture(scope="module")
def quick_bench(artifacts, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    report = bench.run(["mnist"], artifacts, "quick", tmp_path_factory.mktemp("bench-work"), seconds=1,
                       levels=(1, 4))
    bench.write_outputs(report, out)
    return out


OPEN_LOOP_KEYS = ("latency_bounded", "paced_at_70pct_of_peak", "cold_start")  # checked on their own below


def test_quick_bench_measures_every_server_and_every_closed_loop_figure_is_positive(quick_bench):
    report = json.loads((quick_bench / "bench.json").read_text())
    assert report["machine"]["cores"] >= 1 and report["machine"]["cpu_model"] and report["date"]
    mnist = report["models"]["mnist"]
    assert set(mnist["servers"]) == {"ours", "fp32", "stock", "litserve"}
    assert all([lv["concurrency"] for lv in mnist["servers"][label]["levels"]] == [1, 4] for label in mnist["servers"])
    assert {(row["batch_size"], row["processes"]) for row in mnist["inprocess"]} >= {(1, 1)}
    assert set(mnist["stages_us"]) == {"decode", "preprocess", "model", "postprocess"}
    for path, value in numbers(report):
        if any(f".{key}" in path for key in OPEN_LOOP_KEYS) or ".config." in path:  # settings, not measurements
            continue
        assert math.isfinite(value), path
        if path.endswith(".errors"):
            # This service must answer every held-out request; a baseline's errors are a measurement
            # of that baseline (bench.md reports them), not a defect of this service.
            if not any(f".servers.{label}." in path for label in ("stock", "litserve")):
                assert value == 0, f"{path}: held-out requests must all be answered"
        elif path.endswith(".other_cpu_share"):
            assert value >= 0, path  # a quiet machine has nothing else running
        else:
            assert value > 0, path
    assert set(report["not_measured"]) == set(CATALOG) - {"mnist"}


def test_quick_bench_sweeps_litserve_from_its_defaults_and_keeps_the_best(quick_bench):
    litserve = json.loads((quick_bench / "bench.json").read_text())["models"]["mnist"]["servers"]["litserve"]
    assert litserve["sweep"][0]["config"] == {"workers": 1, "api_servers": None, "batch_size": 1,
                                              "batch_delay_ms": 0.0, "torch_threads": None}  # LitServe's defaults
    best = max(litserve["sweep"], key=lambda point: point["peak_rps"])
    assert litserve["config"] == best["label"]


def test_open_loop_figures_search_under_the_models_bound_and_pace_at_70_percent(quick_bench):
    mnist = json.loads((quick_bench / "bench.json").read_text())["models"]["mnist"]
    for label in ("ours", "stock", "litserve"):
        bounded = mnist["servers"][label]["latency_bounded"]
        assert bounded["p99_limit_ms"] == CATALOG["mnist"].latency_bound_ms == mnist["latency_bound_ms"]
        assert bounded["runs"] and all(run["offered_rps"] > 0 for run in bounded["runs"])
        passed = [run["offered_rps"] for run in bounded["runs"] if not run["failures"]]
        assert bounded["rate_rps"] == (max(passed) if passed else 0.0)
    ours = mnist["servers"]["ours"]
    peak = max(level["throughput_rps"] for level in ours["levels"])
    paced = ours["paced_at_70pct_of_peak"]
    assert paced["offered_rps"] == pytest.approx(0.7 * peak) and paced["ok"] > 0


def test_quick_bench_measures_a_cold_start_by_phase(quick_bench):
    cold = json.loads((quick_bench / "bench.json").read_text())["cold_start"]
    median = cold["median"]
    phases = [median[phase] for phase in bench.coldstart.PHASES]
    assert all(value >= 0 for value in phases) and median["total_s"] > 0
    assert sum(phases) == pytest.approx(median["total_s"], abs=0.01)


def test_bench_computes_every_ratio_of_the_run_from_its_own_peaks(quick_bench):
    report = json.loads((quick_bench / "bench.json").read_text())
    mnist = report["models"]["mnist"]
    servers = mnist["servers"]
    ours = max(level["throughput_rps"] for level in servers["ours"]["levels"])
    peaks = {"inprocess": max(row["throughput_rps"] for row in mnist["inprocess"]),
             **{label: max(level["throughput_rps"] for level in servers[label]["levels"])
                for label in ("fp32", "stock", "litserve")}}
    bounded = {label: servers[label]["latency_bounded"]["rate_rps"] for label in ("ours", "stock", "litserve")}
    door = servers["ours"]["through_gateway"]
    assert door["concurrency"] == max(servers["ours"]["levels"], key=lambda lv: lv["throughput_rps"])[
        "concurrency"]  # the door is measured where this service peaked
    expected = {**{f"mnist_ours_over_{baseline}": ours / peak for baseline, peak in peaks.items()},
                **{f"mnist_bounded_ours_over_{label}": bounded["ours"] / bounded[label] if bounded[label]
                   else None for label in ("stock", "litserve")},
                "mnist_gateway_over_direct": door["gateway_rps"] / door["direct_rps"]}
    assert report["ratios"] == pytest.approx(expected)


def test_quick_bench_writes_a_table_row_per_server_and_a_plot(quick_bench):
    table = (quick_bench / "bench.md").read_text()
    for label in ("in-process", "ours", "fp32", "stock", "litserve"):
        assert f"| mnist | {label}" in table
    assert "| mnist_ours_over_stock |" in table and "| mnist_gateway_over_direct |" in table
    assert "| mnist | 25 ms |" in table  # the latency-bounded row
    with Image.open(quick_bench / "bench.png") as plot:
        assert plot.format == "PNG" and plot.width > 500 and plot.height > 300


def test_bench_times_long_requests_and_compares_a_previous_version_in_the_same_run(artifacts, tmp_path_factory):
    model = next(name for name, entry in CATALOG.items() if entry.long_requests(1))
    report = bench.run([model], artifacts, "quick", tmp_path_factory.mktemp("bench-previous"), seconds=1,
                       levels=(2,), previous=artifacts, cold_start=False, servers=("previous",), transports=False)
    servers = report["models"][model]["servers"]
    assert set(servers) == {"ours", "previous"}  # the other servers: quick_bench
    for label in ("ours", "previous"):
        long = servers[label]["long_documents"]
        assert long["body_bytes_mean"] > 9_000  # 10,000-character reviews
        for run in (long["alone"], long["at_peak_concurrency"]):
            assert run["requests"] > 0 and run["errors"] == 0 and run["p50_ms"] > 0
    peaks = {label: max(level["throughput_rps"] for level in servers[label]["levels"]) for label in servers}
    assert report["ratios"][f"{model}_ours_over_previous"] == pytest.approx(peaks["ours"] / peaks["previous"])
    assert f"| {model} | previous |" in bench.markdown(report)


def test_quick_bench_measures_the_three_protocols_against_one_server(quick_bench):
    report = json.loads((quick_bench / "bench.json").read_text())
    protocols = report["transports"]["models"]["mnist"]["transports"]
    assert set(protocols) == {"predictions", "v2_rest", "v2_grpc"}
    assert all(row["errors"] == 0 and row["throughput_rps"] > 0 and row["p99_ms"] >= row["p50_ms"]
               for row in protocols.values()), protocols
    assert protocols["predictions"]["over_predictions"] == 1
    assert "| mnist | v2_grpc |" in (quick_bench / "bench.md").read_text()


def test_the_bench_measures_a_generators_images_per_second_served_and_in_process(artifacts, tmp_path):
    generator = next(name for name, entry in CATALOG.items() if entry.is_generator)
    mode = dataclasses.replace(bench.MODES["quick"], seconds=1, levels=(1, 4))
    figures = bench.measure_generation(generator, artifacts, mode, tmp_path)
    assert list(figures["images_per_request"]) == [str(images) for images in bench.IMAGES_PER_REQUEST]
    for images, row in figures["images_per_request"].items():
        assert [level["concurrency"] for level in row["levels"]] == [1, 4]
        assert all(level["errors"] == 0 and level["throughput_rps"] > 0 for level in row["levels"])
        peak = max(row["levels"], key=lambda level: level["throughput_rps"])
        assert row["peak_images_per_s"] == pytest.approx(int(images) * peak["throughput_rps"])
        assert row["inprocess_images_per_s"] > 0
        assert row["served_over_inprocess"] == pytest.approx(row["peak_images_per_s"] / row["inprocess_images_per_s"])
