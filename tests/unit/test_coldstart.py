"""loadtest/coldstart.py: phases from log timestamps stay >= 0 and add up to the total."""

import datetime

import pytest

from loadtest import coldstart


def stamp(epoch: float) -> str:
    return datetime.datetime.fromtimestamp(epoch).strftime("%Y-%m-%dT%H:%M:%S,%f")[:-3]


def test_a_log_line_written_after_readiness_counts_at_readiness(tmp_path):
    launched, ready = 1_800_000_000.0, 1_800_000_006.0
    (tmp_path / "ts_log.log").write_text(f"{stamp(launched + 1)} [INFO ] main - starting\n"
                                         f"{stamp(launched + 1.5)} [INFO ] main - Inference API bind to ...\n")
    (tmp_path / "model_log.log").write_text(f"{stamp(launched + 5)} [INFO ] W-9000 - Torch worker started.\n"
                                            f"{stamp(ready + 0.004)} [INFO ] W-9000 - MnistHandler ready on cpu\n")
    phases = coldstart.breakdown(tmp_path, launched, ready)
    assert all(phases[phase] >= 0 for phase in coldstart.PHASES)
    assert phases["model_load"] == pytest.approx(1.0) and phases["readiness"] == 0
    assert sum(phases[phase] for phase in coldstart.PHASES) == pytest.approx(phases["total_s"]) == 6.0
