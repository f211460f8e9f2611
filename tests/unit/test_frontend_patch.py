"""Our patch to TorchServe's Java frontend (deploy/frontend_patch.py): applied, and only to 0.12.0.

What the patched frontend does is tested on a running TorchServe: tests/integration/test_faults.py
(no request lost in a kill loop) and test_overload.py (Retry-After on 503)."""

from __future__ import annotations

import shutil
import subprocess
import zipfile

import pytest

from deploy import frontend_patch


def test_the_installed_frontend_carries_the_patch():
    jar = frontend_patch.installed_jar()
    assert frontend_patch.is_patched(jar), "make venv applies it: python -m deploy.frontend_patch"
    assert frontend_patch.main(["--check"]) == 0


def disassembled(jar, name: str) -> str:
    return subprocess.run(["javap", "-c", "-p", "-cp", str(jar), name.replace("/", ".")],
                          capture_output=True, text=True, check=True).stdout


def method_code(listing: str, header: str) -> str:
    code = listing[listing.index(header):]
    return code.split("\n\n")[0]


@pytest.mark.skipif(shutil.which("javap") is None, reason="needs the JDK's javap")
def test_each_rewritten_method_wraps_the_original_which_is_kept():
    jar = frontend_patch.installed_jar()
    model = disassembled(jar, "org/pytorch/serve/wlm/Model")
    poll = method_code(model, "public void pollBatch(")
    assert "pollBatchUnpatched" in poll and "InterruptedBatch.requeue" in poll and "athrow" in poll
    assert "Exception table" in poll and "java/lang/InterruptedException" in poll
    assert "void pollBatchUnpatched(java.lang.String, long, java.util.Map" in model
    netty = disassembled(jar, "org/pytorch/serve/util/NettyUtils")
    send = method_code(netty, "public static void sendHttpResponse(")
    assert send.index("RetryAfter.onResponse") < send.index("sendHttpResponseUnpatched")
    with zipfile.ZipFile(jar) as archive:
        names = set(archive.namelist())
    assert {f"torchservemodels/frontend/{helper}.class" for helper in
            ("InterruptedBatch", "RetryAfter", "OpenInference", "OipJob")} <= names
    assert all(f"{frontend_patch.ORIGINALS}{name}.class" in names for name in frontend_patch.PATCHED_CLASSES)


@pytest.mark.skipif(shutil.which("javap") is None, reason="needs the JDK's javap")
@pytest.mark.parametrize("name, header, helper", [
    ("org/pytorch/serve/grpcimpl/OpenInferenceProtocolImpl", "public void modelInfer(", "OpenInference.modelInfer"),
    ("org/pytorch/serve/grpcimpl/OpenInferenceProtocolImpl", "public void serverReady(", "OpenInference.serverReady"),
    ("org/pytorch/serve/grpcimpl/OpenInferenceProtocolImpl", "public void modelMetadata(",
     "OpenInference.modelMetadata"),
    ("org/pytorch/serve/http/api/rest/OpenInferenceProtocolRequestHandler", "public void handleRequest(",
     "OpenInference.handleRest"),
    ("org/pytorch/serve/job/GRPCJob", "public void response(", "OpenInference.refusedPrediction"),
])
def test_each_open_inference_method_asks_our_helper_first_then_runs_the_original(name, header, helper):
    code = method_code(disassembled(frontend_patch.installed_jar(), name), header)
    unpatched = header.split()[-1].rstrip("(") + "Unpatched"
    assert code.index(helper) < code.index("ifeq") < code.index(unpatched), code


@pytest.mark.skipif(shutil.which("javap") is None, reason="needs the JDK's javap")
def test_the_grpc_server_is_built_by_our_helper_which_adds_the_standard_service_name():
    code = method_code(disassembled(frontend_patch.installed_jar(), "org/pytorch/serve/ModelServer"),
                       "private io.grpc.Server startGRPCServer(")
    assert "OpenInference.startGrpcServer" in code and "startGRPCServerUnpatched" not in code


def test_a_frontend_other_than_0_12_0_is_refused(tmp_path):
    jar = tmp_path / "model-server.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        for name in frontend_patch.PATCHED_CLASSES:
            archive.writestr(f"{name}.class", b"\xca\xfe\xba\xbe not TorchServe 0.12.0's class")
    with pytest.raises(frontend_patch.PatchError, match="0.12.0"):
        frontend_patch.apply(jar)
    assert frontend_patch.main(["--check", "--jar", str(jar)]) == 1


def test_applying_twice_changes_nothing(tmp_path):
    jar = tmp_path / "model-server.jar"
    shutil.copy(frontend_patch.installed_jar(), jar)
    before = jar.read_bytes()
    assert frontend_patch.apply(jar) is False
    assert jar.read_bytes() == before
