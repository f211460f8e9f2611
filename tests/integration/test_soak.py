"""The soak, short: bounded in count (400 requests) against the session server."""

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


def test_soak_refuses_non_loopback_targets(tmp_path):
    with pytest.raises(SystemExit):
        soak.main(["--url", "http://10.0.0.1:8080", "--requests", "1", "--out", str(tmp_path)])
