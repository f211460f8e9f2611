"""Run TorchServe in the foreground for a container, a pod, or a host.

    python -m deploy.entrypoint                 # verify, render, serve until SIGTERM/SIGINT
    python -m deploy.entrypoint --print-config  # show the TorchServe config it would render
    python -m deploy.entrypoint --print-model-config   # ... and what it lays over each model-config

Steps: restrictive umask; TorchServe's frontend checked for our patch (deploy/frontend_patch.py);
a private run folder (0700) for the rendered config, the key file,
logs and temp files; every archive checked against SHA256SUMS and unpacked with the
deployment's model-config settings (deploy/serve_settings.py lists the variables); TorchServe
started with that config; SIGTERM or SIGINT stop it gracefully. Exit status: 0 after a stop we
asked for, 1 when TorchServe ends on its own or will not stop in time, 2 for a refused
configuration or archive.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

from deploy import frontend_patch
from deploy.archives import (ArchiveIntegrityError, read_only, shipped_model_config, unpack_archive,
                            verified_archive_bytes)
from deploy.serve_settings import (ServePlan, ServeSettings, SettingsError, read_checksums, render_properties,
                                   settings_from_env)

TORCHSERVE = Path(sys.executable).with_name("torchserve")


def log(message: str) -> None:
    print(f"[entrypoint] {message}", file=sys.stderr, flush=True)


def remove_tree(tree: Path) -> None:
    """rmtree that also removes the read-only model folders of an earlier run."""
    if tree.exists():
        for path in [tree, *tree.rglob("*")]:
            if path.is_dir() and not path.is_symlink():
                path.chmod(0o700)
        shutil.rmtree(tree)


def verified_archives(settings: ServeSettings) -> dict[str, bytes]:
    checksums = read_checksums(settings.model_store)
    return {model: verified_archive_bytes(settings.model_store, model, checksums) for model in settings.models}


def serve_plan(settings: ServeSettings, archives: dict[str, bytes]) -> ServePlan:
    return settings.plan({model: shipped_model_config(data) for model, data in archives.items()})


def prepare_run_dir(settings: ServeSettings) -> tuple[Path, ServePlan]:
    """Private folders, verified and unpacked models, and the rendered config; returns the
    config and the plan of workers and threads."""
    run_dir = settings.run_dir
    run_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    if run_dir.is_symlink() or run_dir.stat().st_uid != os.getuid():
        raise SettingsError(f"{run_dir} must be a folder of this user (uid {os.getuid()}), not a link or another's")
    run_dir.chmod(0o700)  # an existing folder (a mounted volume) must be private too
    for name in ("logs", "tmp"):
        (run_dir / name).mkdir(mode=0o700, exist_ok=True)
    models_dir = run_dir / "models"
    remove_tree(models_dir)
    models_dir.mkdir(mode=0o700)

    # Each archive is read once: the checked bytes are the unpacked ones.
    archives = verified_archives(settings)
    plan = serve_plan(settings, archives)
    for model, data in archives.items():
        read_only(unpack_archive(data, model, models_dir, settings.model_config(plan, model)))
        log(f"{model}.mar verified against SHA256SUMS and unpacked")

    config = run_dir / "config.properties"
    config.write_text(render_properties(settings.base_config, settings.properties()))
    return config, plan


def torchserve_env(settings: ServeSettings, plan: ServePlan) -> dict[str, str]:
    tmp = str(settings.run_dir / "tmp")
    return {**os.environ, "TEMP": tmp, "TMPDIR": tmp,
            "LOG_LOCATION": str(settings.run_dir / "logs"), "METRICS_LOCATION": str(settings.run_dir / "logs"),
            "OMP_NUM_THREADS": str(plan.threads_per_worker),
            "PATH": f"{TORCHSERVE.parent}{os.pathsep}{os.environ.get('PATH', '')}"}


def describe(settings: ServeSettings, plan: ServePlan) -> str:
    workers = ", ".join(f"{model} x{count}" for model, count in plan.workers.items())
    return (f"{len(plan.workers)} model(s) on {settings.device_type}, workers: {workers}, "
            f"{plan.threads_per_worker} torch thread(s) each, for {settings.cpu_count} core(s), "
            f"{settings.gpu_count} GPU(s)")


def stop_torchserve(launcher: subprocess.Popen) -> None:
    # The `torchserve` launcher starts the Java frontend as its child and only waits for it, so
    # the stop signal goes to the frontend itself, whose shutdown hook stops the workers.
    try:
        frontend = psutil.Process(launcher.pid).children(recursive=False)
        for process in frontend or [psutil.Process(launcher.pid)]:
            process.send_signal(signal.SIGTERM)
    except psutil.NoSuchProcess:
        pass  # it ended on its own meanwhile


def group_alive(group: int) -> bool:
    """Whether any process of TorchServe's process group (launcher, frontend, workers) is left."""
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


def serve(settings: ServeSettings, plan: ServePlan, config: Path) -> int:
    """Run TorchServe until it ends or a stop signal arrives; the exit status as documented above."""
    stop_requested: list[int] = []
    previous = {signum: signal.signal(signum, lambda signum, _frame: stop_requested.append(signum))
                for signum in (signal.SIGTERM, signal.SIGINT)}
    log_config = ["--log-config", str(settings.log_config)] if settings.log_config else []
    launcher = subprocess.Popen([str(TORCHSERVE), "--start", "--foreground", "--ncs", "--ts-config", str(config),
                                 *log_config],
                                cwd=settings.run_dir, env=torchserve_env(settings, plan), start_new_session=True)
    try:
        while launcher.poll() is None and not stop_requested:
            time.sleep(0.2)
        if not stop_requested:
            log(f"TorchServe ended on its own (status {launcher.returncode}); see {settings.run_dir / 'logs'}")
            return 1
        log(f"{signal.Signals(stop_requested[0]).name} received: stopping TorchServe gracefully")
        stop_torchserve(launcher)
        try:
            launcher.wait(timeout=settings.stop_timeout_s)
        except subprocess.TimeoutExpired:
            log(f"TorchServe did not stop within {settings.stop_timeout_s} s: killing it")
            os.killpg(launcher.pid, signal.SIGKILL)
            launcher.wait()
            return 1
        if group_alive(launcher.pid):  # the signal came before the launcher had started the frontend
            os.killpg(launcher.pid, signal.SIGTERM)
            time.sleep(min(5, settings.stop_timeout_s))
            if group_alive(launcher.pid):
                os.killpg(launcher.pid, signal.SIGKILL)
                return 1
        log("TorchServe stopped")
        return 0
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        (settings.run_dir / "key_file.json").unlink(missing_ok=True)


def printed_model_config(settings: ServeSettings) -> dict:
    """What is laid over one model's model-config: planned from the store's archives, or from
    explicit SERVE_WORKERS_PER_MODEL and SERVE_THREADS_PER_WORKER when the store has none."""
    if settings.models:
        plan = serve_plan(settings, verified_archives(settings))
        return settings.model_config(plan, settings.models[0])
    if not (settings.workers_per_model and settings.threads_per_worker):
        raise SettingsError("with no archive in the store, --print-model-config needs SERVE_WORKERS_PER_MODEL "
                            "(or SERVE_WORKERS_PER_GPU) and SERVE_THREADS_PER_WORKER")
    plan = ServePlan({"model": settings.workers_per_model}, settings.threads_per_worker, settings.cpu_count)
    return settings.model_config(plan, "model")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    shown = parser.add_mutually_exclusive_group()
    shown.add_argument("--print-config", action="store_true",
                       help="print the rendered config.properties, start nothing")
    shown.add_argument("--print-model-config", action="store_true",
                       help="print what is laid over each model's model-config, start nothing")
    args = parser.parse_args(argv)
    os.umask(0o077)  # every file TorchServe and its workers write is private to this user
    try:
        settings = settings_from_env(need_models=not (args.print_config or args.print_model_config))
        if args.print_config:
            print(render_properties(settings.base_config, settings.properties()), end="")
            return 0
        if args.print_model_config:
            print(yaml.safe_dump(printed_model_config(settings), sort_keys=False), end="")
            return 0
        if not frontend_patch.is_patched(frontend_patch.installed_jar()):
            raise SettingsError("TorchServe's frontend lacks our patch for requests lost when a worker dies "
                                "(deploy/frontend_patch.py): run `python -m deploy.frontend_patch` (make venv does)")
        config, plan = prepare_run_dir(settings)
        log(describe(settings, plan))
        if plan.oversubscribed:
            log(f"warning: {plan.total_threads} torch threads in all exceed {settings.cpu_count} cores; give the "
                "container more CPU, set SERVE_THREADS_PER_WORKER=1 or serve fewer models per replica")
    except (SettingsError, ArchiveIntegrityError) as error:
        log(f"refusing to start: {error}")
        return 2
    return serve(settings, plan, config)


if __name__ == "__main__":
    sys.exit(main())
