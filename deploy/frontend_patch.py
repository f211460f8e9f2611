"""Our patch to TorchServe 0.12's Java frontend: no request lost when a worker dies, 503s say when to
retry, and the Open Inference Protocol works with clients no one here wrote.

    python -m deploy.frontend_patch           # patch the installed model-server.jar (idempotent)
    python -m deploy.frontend_patch --check   # exit 0 if it is patched, 1 if not

1. A worker thread collecting a batch (waiting up to maxBatchDelay for more requests) is
   interrupted when its worker process dies, and TorchServe clears the jobs it had taken without
   an answer: their clients wait for their own timeout, forever without one. Patched, those jobs
   go back to the head of the queue for the next worker (deploy/frontend/InterruptedBatch.java).
   Jobs already sent to the dying worker still get TorchServe's own immediate 5xx: a request
   that may have crashed a worker is not tried on the next one.
2. TorchServe's 503s (a model's queue full, no worker ready) carry no Retry-After; patched, every
   503 says `Retry-After: 1` (deploy/frontend/RetryAfter.java).
3. TorchServe's Open Inference Protocol (KServe v2) is unusable by standard clients: its gRPC
   service has a TorchServe-only name, ignores `raw_input_contents` and request parameters, and
   misreads BYTES outputs; readiness is always true; model metadata is empty over gRPC and not
   routed over REST; and a request the handler refused is answered OK over gRPC. Patched, all
   of these (deploy/frontend/OpenInference.java, OipJob.java; README "Protocols").

TorchServe is archived, so the fixes are ours. deploy/frontend/PatchFrontend.java rewrites methods
of six classes with the JDK's own ASM: each method is renamed and a wrapper of the old name calls
our helper and the original (install time: javac and java, nothing downloaded).
`make venv` and the image build apply it; the entrypoint refuses to start an unpatched frontend.

The jar is rebuilt next to the original and swapped in with one rename. The original classes are
kept inside it, and a marker entry records the patch's source digest, so a changed patch is
applied again over the originals.
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
REWRITER = SOURCES / "PatchFrontend.java"
HELPERS = tuple(SOURCES / name for name in ("InterruptedBatch.java", "RetryAfter.java", "OpenInference.java",
                                            "OipJob.java"))
HELPER_PACKAGE = "torchservemodels/frontend/"
# TorchServe 0.12.0's classes: each rewrite is reviewed against this class and no other.
PATCHED_CLASSES = {
    "org/pytorch/serve/wlm/Model": "7c5523f1fe77fe79aa32665469e17725e70518692abcf4987989ef72f10d4cff",
    "org/pytorch/serve/util/NettyUtils": "705f3daad4559394afa0152e71fc358fc14baab42133c2cc09e3726e11c52933",
    "org/pytorch/serve/ModelServer": "779d0df5bfc17c5ad09ac46d63d9a017d48a4cd68c1b7464de914d3cb40190b9",
    "org/pytorch/serve/grpcimpl/OpenInferenceProtocolImpl":
        "ba8370dbc201f55076081b2cd86eef1b0d505a89e1cefbb938ffcf4d5015f63c",
    "org/pytorch/serve/http/api/rest/OpenInferenceProtocolRequestHandler":
        "b267a0bb73ad5f8ebcf2885ef3337d9ed6fbb0640201d3ca74bd9b140a226593",
    "org/pytorch/serve/job/GRPCJob": "37d38e228b6314e854c0ab05d7488eb29ade8239683289b36d027357784058ce",
}
ORIGINALS = "META-INF/torchserve-models/original/"
MARKER = "META-INF/torchserve-models/patch.properties"
ASM_EXPORT = "--add-exports=java.base/jdk.internal.org.objectweb.asm=ALL-UNNAMED"


class PatchError(RuntimeError):
    pass


def installed_jar() -> Path:
    import ts  # TorchServe's Python package carries the frontend jar

    return Path(ts.__file__).resolve().parent / "frontend" / "model-server.jar"


def patch_digest() -> str:
    digest = hashlib.sha256()
    for source in (REWRITER, *HELPERS):
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


def _original_classes(jar: Path) -> dict[str, bytes]:
    """TorchServe 0.12.0's own bytes of each class we rewrite (kept aside inside a patched jar)."""
    originals = {}
    with zipfile.ZipFile(jar) as archive:
        names = set(archive.namelist())
        for name, expected in PATCHED_CLASSES.items():
            entry = f"{ORIGINALS}{name}.class" if f"{ORIGINALS}{name}.class" in names else f"{name}.class"
            data = archive.read(entry)
            if hashlib.sha256(data).hexdigest() != expected:
                raise PatchError(f"{jar} is not TorchServe 0.12.0's frontend: {name} differs, and the patch "
                                 "is reviewed for 0.12.0's classes only")
            originals[name] = data
    return originals


def apply(jar: Path) -> bool:
    """Patch jar in place; False when it already carries this patch."""
    if is_patched(jar):
        return False
    for tool in ("javac", "java"):
        if shutil.which(tool) is None:
            raise PatchError(f"{tool} not found: the frontend patch is compiled at install time (a JDK 17)")
    originals = _original_classes(jar)
    with tempfile.TemporaryDirectory() as work_dir:
        work = Path(work_dir)
        # The frontend's classes are Java 8 bytecode; the helpers are compiled to match.
        _run(["javac", "--release", "8", "-cp", str(jar), "-d", str(work / "helpers"), *map(str, HELPERS)])
        _run(["javac", ASM_EXPORT, "-d", str(work / "rewriter"), str(REWRITER)])
        replaced = {}
        for name, data in originals.items():
            original, patched = work / "original.class", work / "patched.class"
            original.write_bytes(data)
            _run(["java", ASM_EXPORT, "-cp", str(work / "rewriter"), "PatchFrontend", name, str(original),
                  str(patched)])
            replaced[f"{name}.class"] = patched.read_bytes()
            replaced[f"{ORIGINALS}{name}.class"] = data
        for helper in sorted((work / "helpers").rglob("*.class")):
            replaced[helper.relative_to(work / "helpers").as_posix()] = helper.read_bytes()
        replaced[MARKER] = (f"patch=re-queue a dying worker's half-collected batch; Retry-After on every 503; "
                            f"Open Inference Protocol for standard clients\n"
                            f"patch_sha256={patch_digest()}\n").encode()
        rebuilt = jar.with_name(jar.name + ".patching")
        with zipfile.ZipFile(jar) as source, zipfile.ZipFile(rebuilt, "w", zipfile.ZIP_DEFLATED) as target:
            for entry in source.infolist():
                if entry.filename not in replaced and not entry.filename.startswith(HELPER_PACKAGE):
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
