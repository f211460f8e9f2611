"""Our patch to TorchServe's Java frontend (deploy/frontend_patch.py): applied, and only to 0.12.0."""

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


@pytest.mark.skipif(shutil.which("javap") is None, reason="needs the JDK's javap")
def test_pollbatch_hands_interrupted_jobs_back_and_the_original_body_is_kept():
    jar = frontend_patch.installed_jar()
    listing = subprocess.run(["javap", "-c", "-p", "-cp", str(jar), "org.pytorch.serve.wlm.Model"],
                             capture_output=True, text=True, check=True).stdout
    guard = listing[listing.index("public void pollBatch("):]
    guard = guard[:guard.index("Exception table")]
    assert "pollBatchUnguarded" in guard and "InterruptedBatch.requeue" in guard and "athrow" in guard
    assert "void pollBatchUnguarded(java.lang.String, long, java.util.Map" in listing
    with zipfile.ZipFile(jar) as archive:
        assert frontend_patch.HELPER_CLASS in archive.namelist()


def test_a_frontend_other_than_0_12_0_is_refused(tmp_path):
    jar = tmp_path / "model-server.jar"
    with zipfile.ZipFile(jar, "w") as archive:
        archive.writestr(frontend_patch.MODEL_CLASS, b"\xca\xfe\xba\xbe not TorchServe 0.12.0's class")
    with pytest.raises(frontend_patch.PatchError, match="0.12.0"):
        frontend_patch.apply(jar)
    assert frontend_patch.main(["--check", "--jar", str(jar)]) == 1


def test_applying_twice_changes_nothing(tmp_path):
    jar = tmp_path / "model-server.jar"
    shutil.copy(frontend_patch.installed_jar(), jar)
    before = jar.read_bytes()
    assert frontend_patch.apply(jar) is False
    assert jar.read_bytes() == before
