"""One real TorchServe per session on free loopback ports, serving the test-sized archives."""

from __future__ import annotations

import pytest

from tests.conftest import FAST_TRAINING
from deploy.torchserve_process import TorchServeProcess


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(server, TorchServeProcess):
        report.sections.append(("TorchServe logs", server.logs()))


@pytest.fixture(scope="session")
def server(model_store, tmp_path_factory):
    process = TorchServeProcess(tmp_path_factory.mktemp("torchserve"), model_store, list(FAST_TRAINING))
    process.start()
    try:
        status = process.wait_until_ready(timeout=180)
        if not status:
            pytest.fail("TorchServe never became ready: " + "; ".join(status.reasons) + "\n" + process.logs())
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="session")
def client(server):
    return server.client()
