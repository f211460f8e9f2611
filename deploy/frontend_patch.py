"""Our one patch to TorchServe 0.12's Java frontend: a dying worker's half-collected batch is re-queued.

    python -m deploy.frontend_patch           # patch the installed model-server.jar (idempotent)
    python -m deploy.frontend_patch --check   # exit 0 if it is patched, 1 if not

The bug: a worker thread collecting a batch (waiting up to maxBatchDelay for more requests) is
interrupted when its worker process dies, and the jobs it had taken are cleared unanswered; their
clients wait for their own timeout, forever without one. TorchServe is archived, so the fix is
ours: deploy/frontend/RequeueInterruptedBatch.java rewrites one method of the frontend's Model
class with the JDK's own ASM (install time, javac and java only), and
deploy/frontend/InterruptedBatch.java puts those jobs back at the head of the queue. Jobs already
sent to the dying worker still get TorchServe's own immediate 5xx (a request that crashed a worker
is not retried on the next). `make venv` and the image build apply it; the entrypoint refuses to
start an unpatched frontend.

The jar is rebuilt next to the original and swapped in with one rename; a marker entry records
the patch's source digest, so a changed patch is applied again over the original.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SOURCES = Path(__file__).resolve().parent / "frontend"
REWRITER = SOURCES / "RequeueInterruptedBatch.java"
HELPER = SOURCES / "InterruptedBatch.java"
MODEL_CLASS = "org/pytorch/serve/wlm/Model.class"
HELPER_CLASS = "torchservemodels/frontend/InterruptedBatch.class"
MARKER = "META-INF/torchserve-models-patch.properties"
# TorchServe 0.12.0's Model.class: the rewrite is reviewed against this class and no other.
ORIGINAL_MODEL_SHA256 = "7c5523f1fe77fe79aa32665469e17725e70518692abcf4987989ef72f10d4cff"
ASM_EXPORT = "--add-exports=java.base/jdk.internal.org.objectweb.asm=ALL-UNNAMED"


class PatchError(RuntimeError):
    pass


def installed_jar() -> Path:
    import ts  # TorchServe's Python package carries the frontend jar

    return Path(ts.__file__).resolve().parent / "frontend" / "model-server.jar"


def patch_digest() -> str:
    digest = hashlib.sha256()
    for source in (REWRITER, HELPER):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def marker(jar: Path) -> dict[str, str]:
    """The patch marker's fields; empty for an unpatched jar."""
    with zipfile.ZipFile(jar) as archive:
        if MARKER not in archive.namelist():
            return {}
        text = archive.read(MARKER).decode()
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def is_patched(jar: Path) -> bool:
    return marker(jar).get("patch_sha256") == patch_digest()


def _run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True)
    if result.returncode != 0:
        raise PatchError(f"{' '.join(command[:2])} failed:\n{result.stdout}{result.stderr}")


def _original_model_class(jar: Path) -> bytes:
    with zipfile.ZipFile(jar) as archive:
        fields = marker(jar)
        name = fields.get("original_model_entry", MODEL_CLASS)  # a patched jar keeps the original aside
        data = archive.read(name)
    if hashlib.sha256(data).hexdigest() != ORIGINAL_MODEL_SHA256:
        raise PatchError(f"{jar} is not TorchServe 0.12.0's frontend: the patch is reviewed for that Model.class only")
    return data


def apply(jar: Path) -> bool:
    """Patch jar in place; False when it already carries this patch."""
    if is_patched(jar):
        return False
    for tool in ("javac", "java"):
        if shutil.which(tool) is None:
            raise PatchError(f"{tool} not found: the frontend patch is compiled at install time (a JDK 17)")
    original = _original_model_class(jar)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        (work / "Model.class").write_bytes(original)
        # The frontend's classes are Java 8 bytecode; the helper is compiled to match.
        _run(["javac", "--release", "8", "-cp", str(jar), "-d", str(work / "classes"), str(HELPER)])
        _run(["java", ASM_EXPORT, str(REWRITER), str(work / "Model.class"), str(work / "Model.patched.class")])
        replaced = {
            MODEL_CLASS: (work / "Model.patched.class").read_bytes(),
            HELPER_CLASS: (work / "classes" / HELPER_CLASS).read_bytes(),
            "META-INF/torchserve-models/Model.class.orig": original,
            MARKER: (f"patch=requeue jobs of a batch whose worker thread was interrupted while collecting it\n"
                     f"patch_sha256={patch_digest()}\n"
                     f"original_model_entry=META-INF/torchserve-models/Model.class.orig\n").encode(),
        }
        rebuilt = jar.with_name(jar.name + ".patching")
        with zipfile.ZipFile(jar) as source, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as target:
            for entry in source.infolist():
                if entry.filename not in replaced:
                    target.writestr(entry, source.read(entry))
            for name, data in replaced.items():
                target.writestr(name, data)
        os.replace(rebuilt, jar)
    return True


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only say whether the installed frontend is patched")
    parser.add_argument("--jar", type=Path, default=None, help="default: the installed TorchServe's model-server.jar")
    args = parser.parse_args(argv)
    jar = args.jar or installed_jar()
    if args.check:
        patched = is_patched(jar)
        print(f"{jar}: {'patched' if patched else 'NOT patched (run: python -m deploy.frontend_patch)'}")
        return 0 if patched else 1
    try:
        print(f"{jar}: {'patched' if apply(jar) else 'already patched'}")
    except PatchError as error:
        print(f"[frontend_patch] {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
