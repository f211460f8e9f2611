"""What the entrypoint serves and how, from environment variables and the host it runs on.

Every variable is optional; the defaults are the secure host defaults of config.properties.

  SERVE_MODEL_STORE          folder with <model>.mar files and SHA256SUMS (default: ./model_store)
  SERVE_MODELS               comma list of models to serve (default: every archive in SHA256SUMS)
  SERVE_BASE_CONFIG          TorchServe config to start from (default: the shipped config.properties)
  SERVE_RUN_DIR              private writable folder: rendered config, key file, logs, temp, unpacked models
  SERVE_INFERENCE_ADDRESS    default http://127.0.0.1:8080 (the container image sets http://0.0.0.0:8080)
  SERVE_MANAGEMENT_ADDRESS   default http://127.0.0.1:8081; must stay on loopback
  SERVE_METRICS_ADDRESS      default http://127.0.0.1:8082; on loopback unless SERVE_METRICS_PUBLIC=true
  SERVE_METRICS_PUBLIC       true: let metrics bind a non-loopback address (scraping; see deploy/k8s)
  SERVE_GRPC_INFERENCE_ADDRESS  the host gRPC inference binds (default 127.0.0.1; the container
                             image sets 0.0.0.0); same token rule as HTTP inference
  SERVE_GRPC_INFERENCE_PORT, SERVE_GRPC_MANAGEMENT_PORT   gRPC ports (management: loopback only)
  SERVE_CPU_COUNT            cores to plan for (default: CPU affinity, capped by the cgroup CPU quota)
  SERVE_GPU_COUNT            GPUs to use (default: the /dev/nvidiaN devices this container sees)
  SERVE_WORKERS_PER_MODEL    workers per model on a CPU host (default: each archive's minWorkers)
  SERVE_WORKERS_PER_GPU      workers per model per GPU on a GPU host (default 1)
  SERVE_THREADS_PER_WORKER   torch threads per worker (default: cores // all workers, at least 1)
  SERVE_BATCH_SIZE, SERVE_MAX_BATCH_DELAY_MS   override every model's batching (default: the .mar's)
  SERVE_JOB_QUEUE_SIZE       requests each model queues before TorchServe answers 503 (default:
                             job_queue_size of the config, 256)
  SERVE_STOP_TIMEOUT_S       seconds a graceful stop may take before it is forced (default 60)
  SERVE_LOG_CONFIG           log4j2 file (default: deploy/config/log4j2.xml, quiet); `builtin`: TorchServe's own
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

REPO = Path(__file__).resolve().parents[1]
# No access log, no per-batch worker line: TorchServe's default logging costs real CPU per request.
DEFAULT_LOG_CONFIG = Path(__file__).resolve().parent / "config" / "log4j2.xml"
LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class SettingsError(ValueError):
    """An environment variable asks for something unsafe or impossible."""


def cgroup_cpu_quota(cgroup_root: Path = Path("/sys/fs/cgroup")) -> float | None:
    """Cores allowed by the cgroup CPU quota (v2 cpu.max or v1 cfs files); None when unlimited."""
    cpu_max = cgroup_root / "cpu.max"
    if cpu_max.exists():
        quota, _, period = cpu_max.read_text().strip().partition(" ")
        return None if quota == "max" else int(quota) / int(period or 100000)
    quota_file, period_file = cgroup_root / "cpu" / "cpu.cfs_quota_us", cgroup_root / "cpu" / "cpu.cfs_period_us"
    if quota_file.exists() and period_file.exists():
        quota = int(quota_file.read_text())
        return None if quota <= 0 else quota / int(period_file.read_text())
    return None


def detect_cpu_count(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """Cores this process may really use: affinity, then the container's quota (a k8s CPU limit)."""
    cores = len(os.sched_getaffinity(0))
    quota = cgroup_cpu_quota(cgroup_root)
    # A fractional quota (1500m) cannot run two busy threads at full speed: round down, keep one.
    return max(1, min(cores, math.floor(quota))) if quota else cores


def detect_gpu_count(dev: Path = Path("/dev")) -> int:
    """GPUs visible to this container: the NVIDIA runtime / device plugin mounts only granted ones."""
    return sum(1 for path in dev.glob("nvidia*") if re.fullmatch(r"nvidia\d+", path.name))


def read_checksums(model_store: Path) -> dict[str, str]:
    """{file name: sha256} from SHA256SUMS (sha256sum format, written by training/archive.py)."""
    manifest = model_store / "SHA256SUMS"
    if not manifest.exists():
        raise SettingsError(f"{manifest} is missing: run `make archive`, which writes it beside the .mar files")
    sums = {}
    for line in manifest.read_text().splitlines():
        if line.strip():
            digest, _, name = line.partition("  ")
            sums[name.lstrip("*")] = digest
    return sums


def _address(env: dict, key: str, default: str, loopback_only: bool) -> str:
    address = env.get(key, default)
    host = urlparse(address).hostname
    if host is None:
        raise SettingsError(f"{key}={address!r} is not an address like http://127.0.0.1:8081")
    if loopback_only and host not in LOOPBACK_HOSTS:
        raise SettingsError(f"{key}={address!r}: this API must stay on loopback (127.0.0.1); "
                            "reach it with `kubectl exec`/`docker exec`, never over the network")
    return address


def _host(env: dict, key: str) -> str | None:
    """A bare host or IP address (gRPC binds a host, not a URL); None when unset."""
    value = env.get(key, "")
    if value and not re.fullmatch(r"[A-Za-z0-9.:-]+", value):
        raise SettingsError(f"{key}={value!r} must be a host or IP address such as 0.0.0.0")
    return value or None


def _positive_int(env: dict, key: str, default: int | None) -> int | None:
    value = env.get(key)
    if value in (None, ""):
        return default
    if not value.isdigit() or int(value) < 1:
        raise SettingsError(f"{key}={value!r} must be a positive integer")
    return int(value)


@dataclass(frozen=True)
class ServePlan:
    """How many workers each model gets and how many torch threads each worker runs."""

    workers: dict[str, int]
    threads_per_worker: int
    cpu_count: int

    @property
    def total_threads(self) -> int:
        return sum(self.workers.values()) * self.threads_per_worker

    @property
    def oversubscribed(self) -> bool:
        # Single-threaded workers only share time slices; several OpenMP threads per worker on
        # too few cores spin against each other (README "Performance").
        return self.threads_per_worker > 1 and self.total_threads > self.cpu_count


@dataclass(frozen=True)
class ServeSettings:
    model_store: Path
    models: list[str]
    base_config: Path
    log_config: Path | None     # None: TorchServe's built-in logging
    run_dir: Path
    inference_address: str
    management_address: str
    metrics_address: str
    grpc_ports: dict[str, int | None]
    grpc_inference_address: str | None  # None: config.properties' (127.0.0.1)
    cpu_count: int
    gpu_count: int
    workers_per_model: int | None   # None: each archive's own minWorkers; on a GPU host: per GPU x GPUs
    threads_per_worker: int | None  # None: the cores shared out among all workers
    batch_size: int | None
    max_batch_delay_ms: int | None
    job_queue_size: int | None  # None: config.properties' job_queue_size
    stop_timeout_s: int

    @property
    def device_type(self) -> str:
        return "gpu" if self.gpu_count else "cpu"

    def plan(self, shipped_configs: dict[str, dict]) -> ServePlan:
        """Workers and threads from the settings, or from each archive's model-config (its tuned
        minWorkers) and the cores this host really has."""
        workers = {model: self.workers_per_model or int(config.get("minWorkers", 1))
                   for model, config in shipped_configs.items()}
        threads = self.threads_per_worker or max(1, self.cpu_count // max(1, sum(workers.values())))
        return ServePlan(workers, threads, self.cpu_count)

    def properties(self) -> dict[str, str]:
        """The config.properties keys the entrypoint sets; every other key stays as shipped."""
        settings = {
            "inference_address": self.inference_address,
            "management_address": self.management_address,
            "metrics_address": self.metrics_address,
            # The run folder's model store holds exactly the verified, unpacked models to serve.
            "model_store": str(self.run_dir / "models"),
            "load_models": "all",
            "number_of_gpu": str(self.gpu_count),
        }
        if self.workers_per_model:
            settings["default_workers_per_model"] = str(self.workers_per_model)
        for name, port in self.grpc_ports.items():
            if port is not None:
                settings[f"grpc_{name}_port"] = str(port)
        if self.grpc_inference_address:
            settings["grpc_inference_address"] = self.grpc_inference_address
        return settings

    def model_config(self, plan: ServePlan, model: str) -> dict:
        """Keys laid over a .mar's model-config: TorchServe 0.12 lets the .mar's minWorkers,
        maxWorkers, batchSize and maxBatchDelay win over config.properties (`models=` and
        default_workers_per_model), so the model-config itself is where they must be set."""
        workers = plan.workers[model]
        config = {"minWorkers": workers, "maxWorkers": workers, "deviceType": self.device_type,
                  "handler": {"torch_threads": plan.threads_per_worker}}
        if self.gpu_count:
            config["deviceIds"] = list(range(self.gpu_count))
        if self.batch_size is not None:
            config["batchSize"] = self.batch_size
        if self.max_batch_delay_ms is not None:
            config["maxBatchDelay"] = self.max_batch_delay_ms
        if self.job_queue_size is not None:
            config["jobQueueSize"] = self.job_queue_size
        return config


def settings_from_env(env: dict[str, str] | None = None, need_models: bool = True) -> ServeSettings:
    """The settings the environment asks for; `need_models=False` (printing a config) allows a
    store without archives."""
    env = dict(os.environ if env is None else env)
    model_store = Path(env.get("SERVE_MODEL_STORE", REPO / "model_store")).resolve()
    if env.get("SERVE_MODELS"):
        models = [name.strip() for name in env["SERVE_MODELS"].split(",") if name.strip()]
    elif need_models or (model_store / "SHA256SUMS").exists():
        models = sorted(name.removesuffix(".mar") for name in read_checksums(model_store) if name.endswith(".mar"))
    else:
        models = []
    if need_models and not models:
        raise SettingsError(f"no model to serve: {model_store}/SHA256SUMS lists no .mar and SERVE_MODELS is empty")
    for name in models:
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]*", name):
            raise SettingsError(f"model name {name!r} may hold only letters, digits, '_' and '-'")

    metrics_public = env.get("SERVE_METRICS_PUBLIC", "false").lower() == "true"
    cpu_count = _positive_int(env, "SERVE_CPU_COUNT", None) or detect_cpu_count()
    gpu_value = env.get("SERVE_GPU_COUNT", "")
    if gpu_value and not gpu_value.isdigit():
        raise SettingsError(f"SERVE_GPU_COUNT={gpu_value!r} must be 0 or a positive integer")
    gpu_count = int(gpu_value) if gpu_value else detect_gpu_count()
    workers = (_positive_int(env, "SERVE_WORKERS_PER_GPU", 1) * gpu_count if gpu_count
               else _positive_int(env, "SERVE_WORKERS_PER_MODEL", None))
    run_dir = Path(env.get("SERVE_RUN_DIR") or Path(env.get("TMPDIR", "/tmp")) / f"torchserve-{os.getuid()}")
    log_config = env.get("SERVE_LOG_CONFIG", str(DEFAULT_LOG_CONFIG))

    return ServeSettings(
        model_store=model_store, models=models,
        base_config=Path(env.get("SERVE_BASE_CONFIG", REPO / "config.properties")),
        log_config=None if log_config == "builtin" else Path(log_config),
        run_dir=run_dir.absolute(),
        inference_address=_address(env, "SERVE_INFERENCE_ADDRESS", "http://127.0.0.1:8080", loopback_only=False),
        management_address=_address(env, "SERVE_MANAGEMENT_ADDRESS", "http://127.0.0.1:8081", loopback_only=True),
        metrics_address=_address(env, "SERVE_METRICS_ADDRESS", "http://127.0.0.1:8082",
                                 loopback_only=not metrics_public),
        grpc_ports={"inference": _positive_int(env, "SERVE_GRPC_INFERENCE_PORT", None),
                    "management": _positive_int(env, "SERVE_GRPC_MANAGEMENT_PORT", None)},
        grpc_inference_address=_host(env, "SERVE_GRPC_INFERENCE_ADDRESS"),
        cpu_count=cpu_count, gpu_count=gpu_count, workers_per_model=workers,
        threads_per_worker=_positive_int(env, "SERVE_THREADS_PER_WORKER", None),
        batch_size=_positive_int(env, "SERVE_BATCH_SIZE", None),
        max_batch_delay_ms=_positive_int(env, "SERVE_MAX_BATCH_DELAY_MS", None),
        job_queue_size=_positive_int(env, "SERVE_JOB_QUEUE_SIZE", None),
        stop_timeout_s=_positive_int(env, "SERVE_STOP_TIMEOUT_S", 60),
    )


def render_properties(base_config: Path, overrides: dict[str, str]) -> str:
    return render_properties_text(base_config.read_text(), overrides)


def render_properties_text(base: str, overrides: dict[str, str]) -> str:
    """`base` (config.properties text) with `overrides` replacing (or appended after) its keys; comments kept."""
    lines, seen = [], set()
    for line in base.splitlines():
        key = line.split("=", 1)[0].strip()
        if "=" in line and not line.lstrip().startswith("#") and key in overrides:
            line = f"{key}={overrides[key]}"
            seen.add(key)
        lines.append(line)
    lines += [f"{key}={value}" for key, value in overrides.items() if key not in seen]
    return "\n".join(lines) + "\n"
