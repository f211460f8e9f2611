"""Verified, unpacked model archives for the entrypoint.

Each .mar is read once: its SHA-256 is checked against SHA256SUMS and the same bytes are
unpacked into a private folder, so nothing can swap the file between check and load. The
unpacked model-config gets the deployment's settings laid over it (workers, threads, batching,
device); TorchServe then loads the folders, which it supports like .mar files.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path, PurePosixPath

import yaml


class ArchiveIntegrityError(RuntimeError):
    """An archive is missing, unlisted, or differs from its recorded checksum."""


def verified_archive_bytes(model_store: Path, model: str, checksums: dict[str, str]) -> bytes:
    mar = model_store / f"{model}.mar"
    if f"{model}.mar" not in checksums:
        raise ArchiveIntegrityError(f"{mar.name} is not listed in {model_store / 'SHA256SUMS'}: refusing to serve "
                                    "an archive `make archive` did not record")
    if not mar.is_file():
        raise ArchiveIntegrityError(f"{mar} is missing (listed in SHA256SUMS)")
    data = mar.read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if actual != checksums[mar.name]:
        raise ArchiveIntegrityError(
            f"{mar} does not match SHA256SUMS (expected {checksums[mar.name]}, got {actual}): the archive was "
            "tampered with or corrupted; refusing to serve it. Rebuild it with `make archive`.")
    return data


def merge(base: dict, overlay: dict) -> dict:
    """`overlay` over `base`, one level of nested dicts merged (the `handler:` section)."""
    merged = dict(base)
    for key, value in overlay.items():
        merged[key] = {**base.get(key, {}), **value} if isinstance(value, dict) else value
    return merged


def shipped_model_config(data: bytes) -> dict:
    """The model-config inside a .mar (its MANIFEST's configFile), or {} when it has none."""
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        manifest = json.loads(archive.read("MAR-INF/MANIFEST.json"))
        name = manifest.get("model", {}).get("configFile")
        return (yaml.safe_load(archive.read(name)) or {}) if name and name in archive.namelist() else {}


def unpack_archive(data: bytes, model: str, destination: Path, model_config: dict) -> Path:
    """Unpack a verified .mar to destination/<model>/ and lay `model_config` over its model-config."""
    target = destination / model
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        for member in archive.namelist():
            path = PurePosixPath(member)
            if path.is_absolute() or ".." in path.parts:
                raise ArchiveIntegrityError(f"{model}.mar holds an unsafe path {member!r}")
        archive.extractall(target)
    manifest_path = target / "MAR-INF" / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    config_name = manifest["model"].setdefault("configFile", "model-config.yaml")
    config_path = target / config_name
    shipped = yaml.safe_load(config_path.read_text()) if config_path.exists() else {}
    config_path.write_text(yaml.safe_dump(merge(shipped or {}, model_config), sort_keys=False))
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return target


def read_only(tree: Path) -> None:
    """Make the unpacked model read-only for its owner too: workers have no business writing there."""
    for path in sorted(tree.rglob("*"), reverse=True):
        path.chmod(0o500 if path.is_dir() else 0o400)
    tree.chmod(0o500)
