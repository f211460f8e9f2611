"""One real TorchServe per session, started by the production entrypoint on free loopback ports."""

from __future__ import annotations

import pytest

from loadtest.launcher import EntrypointServer
from training.catalog import CATALOG

# Long enough that concurrent test requests share a batch; the shipped model-configs use 5 ms.
TEST_SETTINGS = {"SERVE_MAX_BATCH_DELAY_MS": "150"}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    server = item.funcargs.get("server") if hasattr(item, "funcargs") else None
    if report.failed and isinstance(server, EntrypointServer):
        report.sections.append(("TorchServe logs", server.logs()))


@pytest.fixture(scope="session")
def server(model_store, tmp_path_factory):
    with EntrypointServer(tmp_path_factory.mktemp("torchserve"), model_store, list(CATALOG),
                          TEST_SETTINGS).running() as running:
        yield running


@pytest.fixture(scope="session")
def client(server):
    return server.client()
