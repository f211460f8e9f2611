"""The entrypoint's rendering: environment + host -> TorchServe config and model-config."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from pathlib import Path

import pytest
import yaml

from deploy.archives import ArchiveIntegrityError, unpack_archive, verified_archive_bytes
from deploy.entrypoint import prepare_run_dir
from deploy.serve_settings import (SettingsError, cgroup_cpu_quota, detect_cpu_count, render_properties,
                                   settings_from_env)
from training.catalog import CATALOG
from tests.unit.test_config_security import properties

REPO = Path(__file__).resolve().parents[2]
MODELS = sorted(CATALOG)


@pytest.fixture
def store(tmp_path) -> Path:
    """A model store whose SHA256SUMS lists every test model (settings never open the archives)."""
    store = tmp_path / "model_store"
    store.mkdir()
    (store / "SHA256SUMS").write_text("".join(f"{'0' * 64}  {name}.mar\n" for name in MODELS))
    return store


def settings(store: Path, **env):
    return settings_from_env({"SERVE_MODEL_STORE": str(store), "SERVE_RUN_DIR": str(store.parent / "run"), **env})


def test_models_default_to_every_archive_in_sha256sums(store):
    assert settings(store, SERVE_CPU_COUNT="4", SERVE_GPU_COUNT="0").models == MODELS


def planned(rendered, shipped_workers: int = 2):
    """The plan for archives that each ship minWorkers=shipped_workers, and the first model's overlay."""
    plan = rendered.plan({model: {"minWorkers": shipped_workers} for model in MODELS})
    return plan, rendered.model_config(plan, MODELS[0])


@pytest.mark.parametrize("cores", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("workers", [1, 2])
def test_workers_times_threads_never_exceed_the_cores(store, cores, workers):
    plan, config = planned(settings(store, SERVE_CPU_COUNT=str(cores), SERVE_GPU_COUNT="0",
                                    SERVE_WORKERS_PER_MODEL=str(workers)))
    total_workers = workers * len(MODELS)
    assert config["handler"]["torch_threads"] == plan.threads_per_worker >= 1
    if total_workers <= cores:
        assert plan.total_threads <= cores
        assert plan.threads_per_worker == cores // total_workers
    else:  # more workers than cores: one thread each, time-sliced, not oversubscribed OpenMP threads
        assert plan.threads_per_worker == 1 and not plan.oversubscribed


def test_explicit_threads_past_the_cores_are_flagged_as_oversubscribed(store):
    plan, _ = planned(settings(store, SERVE_CPU_COUNT="2", SERVE_GPU_COUNT="0", SERVE_THREADS_PER_WORKER="2"))
    assert plan.total_threads == 2 * 2 * len(MODELS) and plan.oversubscribed


def test_workers_default_to_each_archives_own_and_threads_share_the_cores(store):
    rendered = settings(store, SERVE_CPU_COUNT="12", SERVE_GPU_COUNT="0")
    plan = rendered.plan({"a": {"minWorkers": 2}, "b": {"minWorkers": 3}, "c": {}})
    assert plan.workers == {"a": 2, "b": 3, "c": 1}
    assert plan.threads_per_worker == 12 // 6
    assert rendered.model_config(plan, "b")["minWorkers"] == 3


def test_cpu_host_renders_cpu_device_and_no_gpu(store):
    rendered = settings(store, SERVE_CPU_COUNT="8", SERVE_GPU_COUNT="0", SERVE_WORKERS_PER_MODEL="2",
                        SERVE_BATCH_SIZE="16", SERVE_MAX_BATCH_DELAY_MS="10")
    _, config = planned(rendered, shipped_workers=1)
    assert properties(render_properties(rendered.base_config, rendered.properties()))["number_of_gpu"] == "0"
    assert config["deviceType"] == "cpu" and "deviceIds" not in config
    assert config["minWorkers"] == config["maxWorkers"] == 2
    assert (config["batchSize"], config["maxBatchDelay"]) == (16, 10)


def test_one_gpu_host_renders_gpu_device_ids_and_workers_per_gpu(store):
    rendered = settings(store, SERVE_CPU_COUNT="8", SERVE_GPU_COUNT="1", SERVE_WORKERS_PER_GPU="2")
    plan, config = planned(rendered, shipped_workers=1)
    assert properties(render_properties(rendered.base_config, rendered.properties()))["number_of_gpu"] == "1"
    assert config["deviceType"] == "gpu" and config["deviceIds"] == [0]
    assert config["minWorkers"] == config["maxWorkers"] == 2
    assert plan.total_threads <= 8


def test_batching_stays_the_archives_own_unless_set(store):
    _, config = planned(settings(store, SERVE_CPU_COUNT="2", SERVE_GPU_COUNT="0"))
    assert "batchSize" not in config and "maxBatchDelay" not in config


def test_rendered_config_keeps_every_protection_of_the_shipped_one(store):
    rendered = settings(store, SERVE_CPU_COUNT="2", SERVE_GPU_COUNT="0",
                        SERVE_INFERENCE_ADDRESS="http://0.0.0.0:8080")
    shipped = properties((REPO / "config.properties").read_text())
    final = properties(render_properties(rendered.base_config, rendered.properties()))
    changed = {key for key in shipped if final[key] != shipped[key]}
    assert changed <= {"inference_address", "model_store"}
    assert final["inference_address"] == "http://0.0.0.0:8080"
    assert final["management_address"] == shipped["management_address"] == "http://127.0.0.1:8081"
    assert final["model_store"] == str(rendered.run_dir / "models")  # only the verified, unpacked models


@pytest.mark.parametrize("key", ["SERVE_MANAGEMENT_ADDRESS", "SERVE_METRICS_ADDRESS"])
@pytest.mark.parametrize("address", ["http://0.0.0.0:8081", "http://10.1.2.3:8081"])
def test_management_and_metrics_refuse_a_non_loopback_address(store, key, address):
    with pytest.raises(SettingsError, match="loopback"):
        settings(store, SERVE_CPU_COUNT="2", **{key: address})


def test_metrics_may_leave_loopback_only_with_the_explicit_opt_in(store):
    rendered = settings(store, SERVE_CPU_COUNT="2", SERVE_METRICS_ADDRESS="http://10.1.2.3:8082",
                        SERVE_METRICS_PUBLIC="true")
    assert rendered.metrics_address == "http://10.1.2.3:8082"
    assert rendered.management_address == "http://127.0.0.1:8081"


def test_grpc_inference_may_face_the_network_like_http_inference_and_management_may_not(store):
    rendered = settings(store, SERVE_CPU_COUNT="2", SERVE_GRPC_INFERENCE_ADDRESS="0.0.0.0").properties()
    assert rendered["grpc_inference_address"] == "0.0.0.0"
    assert "grpc_management_address" not in rendered  # the shipped 127.0.0.1 stays
    assert "grpc_inference_address" not in settings(store, SERVE_CPU_COUNT="2").properties()


@pytest.mark.parametrize("env, message", [
    ({"SERVE_WORKERS_PER_MODEL": "0"}, "SERVE_WORKERS_PER_MODEL='0' must be a positive integer"),
    ({"SERVE_BATCH_SIZE": "-1"}, "SERVE_BATCH_SIZE='-1' must be a positive integer"),
    ({"SERVE_GPU_COUNT": "one"}, "SERVE_GPU_COUNT='one' must be 0 or a positive integer"),
    ({"SERVE_MODELS": "../etc"}, "model name '../etc' may hold only"),
    ({"SERVE_GRPC_INFERENCE_ADDRESS": "0.0.0.0\nenable_model_api=true"}, "must be a host or IP address"),
])
def test_invalid_settings_are_refused_with_their_name(store, env, message):
    with pytest.raises(SettingsError) as refused:
        settings(store, SERVE_CPU_COUNT="2", **env)
    assert message in str(refused.value)


def test_missing_checksum_manifest_is_refused(tmp_path):
    with pytest.raises(SettingsError, match="SHA256SUMS is missing"):
        settings_from_env({"SERVE_MODEL_STORE": str(tmp_path)})


@pytest.mark.parametrize("cpu_max, expected", [("max 100000", None), ("150000 100000", 1.5), ("400000 100000", 4.0)])
def test_cgroup_v2_quota_is_read(tmp_path, cpu_max, expected):
    (tmp_path / "cpu.max").write_text(cpu_max + "\n")
    assert cgroup_cpu_quota(tmp_path) == expected


def test_cgroup_v1_quota_is_read(tmp_path):
    (tmp_path / "cpu").mkdir()
    (tmp_path / "cpu" / "cpu.cfs_quota_us").write_text("50000\n")
    (tmp_path / "cpu" / "cpu.cfs_period_us").write_text("100000\n")
    assert cgroup_cpu_quota(tmp_path) == 0.5


def test_a_fractional_cpu_limit_plans_for_the_whole_cores_below_it(tmp_path):
    (tmp_path / "cpu.max").write_text("150000 100000\n")  # a k8s limit of 1500m
    assert detect_cpu_count(tmp_path) == 1


def mar_bytes(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_tampered_archive_is_refused_with_a_clear_message(tmp_path):
    data = mar_bytes({"MAR-INF/MANIFEST.json": "{}"})
    (tmp_path / "m.mar").write_bytes(data + b"tampered")
    checksums = {"m.mar": hashlib.sha256(data).hexdigest()}
    with pytest.raises(ArchiveIntegrityError, match="does not match SHA256SUMS .*refusing to serve it"):
        verified_archive_bytes(tmp_path, "m", checksums)


def test_archive_not_listed_in_sha256sums_is_refused(tmp_path):
    (tmp_path / "m.mar").write_bytes(b"x")
    with pytest.raises(ArchiveIntegrityError, match="not listed"):
        verified_archive_bytes(tmp_path, "m", {})


def test_archive_with_a_path_outside_its_folder_is_refused(tmp_path):
    with pytest.raises(ArchiveIntegrityError, match="unsafe path"):
        unpack_archive(mar_bytes({"../escape.py": "", "MAR-INF/MANIFEST.json": "{}"}), "m", tmp_path, {})
    assert not (tmp_path / "escape.py").exists()


def test_unpacked_model_config_keeps_the_archives_keys_under_the_deployments(tmp_path):
    manifest = {"model": {"modelName": "m", "configFile": "m.yaml"}}
    shipped = {"minWorkers": 1, "batchSize": 8, "responseTimeout": 30, "handler": {"torch_threads": 1, "max_bytes": 9}}
    data = mar_bytes({"MAR-INF/MANIFEST.json": json.dumps(manifest), "m.yaml": yaml.safe_dump(shipped)})
    target = unpack_archive(data, "m", tmp_path, {"minWorkers": 3, "handler": {"torch_threads": 4}})
    config = yaml.safe_load((target / "m.yaml").read_text())
    assert config == {"minWorkers": 3, "batchSize": 8, "responseTimeout": 30,
                      "handler": {"torch_threads": 4, "max_bytes": 9}}


def test_run_dir_that_is_a_link_is_refused(store, tmp_path):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "run").symlink_to(elsewhere)
    with pytest.raises(SettingsError, match="not a link"):
        prepare_run_dir(settings(store, SERVE_RUN_DIR=str(tmp_path / "run"), SERVE_CPU_COUNT="2"))
