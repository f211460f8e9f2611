"""The soak, short: bounded in count, against the session server (400 requests) and, with worker
kills and a frontend restart, against a server of its own (3,000 requests; README has the 100k run)."""

import json
import shutil

import pytest

from loadtest import soak


def test_short_soak_has_no_errors_and_flat_worker_memory(server, tmp_path):
    exit_code = soak.main(["--url", server.inference_url, "--management", server.management_url,
                           "--key-file", str(server.key_file), "--requests", "400", "--concurrency", "4",
                           "--sample-every", "50", "--warmup-fraction", "0.25", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "soak.json").read_text())
    assert report["errors"] == 0, report["statuses"]
    assert set(report["worker_rss_growth_after_warmup"]) == set(server.models)
    assert all(growth <= 0.10 for growth in report["worker_rss_growth_after_warmup"].values())
    assert all(snapshot["workers_rss_mb"]["mnist"] > 50 for snapshot in report["snapshots"])  # real processes
    assert shutil.which("jstat"), "the JDK's jstat reads the frontend heap; install a JDK, not only a JRE"
    heap = [snapshot["frontend_heap_mb"] for snapshot in report["snapshots"]]
    assert all(value is not None and 10 < value < 4096 for value in heap), heap
    assert (tmp_path / "soak.png").stat().st_size > 0
    assert exit_code == 0


def test_short_soak_with_worker_kills_and_a_frontend_restart_loses_no_request(model_store, tmp_path):
    exit_code = soak.main(["--serve", str(model_store), "--requests", "3000", "--concurrency", "6",
                           "--kill-every", "400", "--restart-at", "1500", "--sample-every", "100",
                           "--warmup-fraction", "0.2", "--out", str(tmp_path)])
    report = json.loads((tmp_path / "soak.json").read_text())
    kinds = [event["kind"] for event in report["faults"]["events"]]
    print(f"fault soak: {report['first_attempt_statuses']} at first, {report['statuses']} in the end, "
          f"retries {report['requests_by_retries']}, faults {kinds}, slowest {report['max_latency_s']} s")
    assert kinds.count("frontend restart") == 1 and kinds.count("worker kill") >= 5
    assert all(event["ready"] for event in report["faults"]["events"] if event["kind"] == "frontend restart")
    assert report["lost"] == 0
    assert report["statuses"] == {"200": 3000}  # every request answered in the end
    # At first, only what the faults explain: a killed worker's batch (5xx) or a connection the
    # restart refused or closed; never a 4xx, never a timeout.
    assert all(code == "200" or code.startswith("5") or code.endswith("Error")
               for code in report["first_attempt_statuses"]), report["first_attempt_statuses"]
    assert all(growth <= 0.10 for growth in report["worker_rss_growth_after_warmup"].values())
    assert exit_code == 0


def test_soak_refuses_faults_on_a_server_it_did_not_start(tmp_path):
    with pytest.raises(SystemExit):
        soak.main(["--requests", "1", "--kill-every", "1", "--out", str(tmp_path)])


def test_soak_refuses_non_loopback_targets(tmp_path):
    with pytest.raises(SystemExit):
        soak.main(["--url", "http://10.0.0.1:8080", "--requests", "1", "--out", str(tmp_path)])
