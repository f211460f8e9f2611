"""The serving image run as the README tells ops to run it, and the Kubernetes pod without a cluster.

`make docker-test` sets SERVE_TEST_IMAGE (and SERVE_TEST_GATEWAY_IMAGE, SERVE_TEST_DOCKER); the
integration suite's HTTP checks then run against a `ContainerServer`, and tests/container/ adds
what only a container shows (HEALTHCHECK, users, read-only root, tampering, stop and restart).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import subprocess
import sys
import time
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

import requests
import yaml

from deploy.client import TorchServeClient
from loadtest.launcher import free_port

REPO = Path(__file__).resolve().parents[1]
DOCKER = os.environ.get("SERVE_TEST_DOCKER", "docker")
# `make docker-run` and the README's `docker run`: nothing writable but the run volume and /tmp.
HARDENED = ["--read-only", "--tmpfs", "/tmp", "--cap-drop", "ALL", "--security-opt", "no-new-privileges"]
STOP_GRACE_S = 70  # compose.yaml's stop_grace_period, the manifest's grace period less its preStop pause
# Worker PIDs by model from the management API, which only the container's own loopback reaches.
WORKER_PIDS = """
import json, sys, urllib.request
key = json.load(open("/srv/run/key_file.json"))["management"]["key"]
request = urllib.request.Request("http://127.0.0.1:8081/models/" + sys.argv[1],
                                 headers={"Authorization": "Bearer " + key})
print(json.dumps([w["pid"] for v in json.load(urllib.request.urlopen(request, timeout=10)) for w in v["workers"]]))
"""


def docker(*args: str, check: bool = True, timeout: float = 300,
           stdin: str | None = None) -> subprocess.CompletedProcess:
    result = subprocess.run([DOCKER, *args], capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and result.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed ({result.returncode}): {result.stderr or result.stdout}")
    return result


def inspect(name: str, template: str) -> str:
    return docker("inspect", "-f", template, name).stdout.strip()


def wait_until_healthy(container: str, timeout: float = 240) -> None:
    """Until Docker's own HEALTHCHECK says healthy (the image's readiness check)."""
    deadline = time.monotonic() + timeout
    while (status := inspect(container, "{{.State.Status}} {{.State.Health.Status}}")) != "running healthy":
        if not status.startswith("running") or time.monotonic() > deadline:
            logs = docker("logs", "--tail", "60", container, check=False)
            raise RuntimeError(f"container {status} instead of healthy:\n{logs.stdout}{logs.stderr}")
        time.sleep(1)


def container_ip(name: str) -> str:
    return inspect(name, "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}")


@cache
def rendered_manifests(overlay: str) -> tuple[dict, ...]:
    """deploy/k8s/overlays/<overlay> as `kubectl kustomize` renders it, one dict per resource."""
    kubectl = Path(sys.executable).with_name("kubectl")
    result = subprocess.run([str(kubectl), "kustomize", str(REPO / "deploy" / "k8s" / "overlays" / overlay)],
                            capture_output=True, text=True, check=True)
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def unique(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(4)}"


@dataclass
class ContainerServer:
    """One serving container: 8080 published on 127.0.0.1 only, keys on a named run volume."""

    image: str
    workdir: Path
    name: str = field(default_factory=lambda: unique("torchserve-test"))
    port: int = field(default_factory=free_port)
    started_at: float = 0.0

    @property
    def volume(self) -> str:
        return f"{self.name}-run"

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    def client(self) -> TorchServeClient:
        return TorchServeClient(self.inference_url, "http://management-is-not-published.invalid", self.key_file)

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        docker("rm", "-f", self.name, check=False)
        docker("run", "-d", "--name", self.name, "-p", f"127.0.0.1:{self.port}:8080", "-v", f"{self.volume}:/srv/run",
               *HARDENED, self.image)
        self.started_at = time.monotonic()

    def wait_until_healthy(self, timeout: float = 240) -> None:
        wait_until_healthy(self.name, timeout)

    def read_key_file(self) -> None:
        """The key as the README tells users to read it from the run volume."""
        self.key_file.write_text(docker("exec", self.name, "cat", "/srv/run/key_file.json").stdout)

    @contextlib.contextmanager
    def running(self, timeout: float = 240):
        self.start()
        try:
            self.wait_until_healthy(timeout)
            self.read_key_file()
            yield self
        finally:
            self.remove()

    def stop(self) -> tuple[int, float]:
        """`docker stop` (SIGTERM, SIGKILL after the grace period): exit code and seconds taken."""
        started = time.monotonic()
        docker("stop", "-t", str(STOP_GRACE_S), self.name, timeout=STOP_GRACE_S + 30)
        return int(inspect(self.name, "{{.State.ExitCode}}")), time.monotonic() - started

    def restart(self, timeout: float = 240) -> None:
        docker("start", self.name)
        self.started_at = time.monotonic()
        self.wait_until_healthy(timeout)
        self.read_key_file()

    def remove(self) -> None:
        docker("rm", "-f", self.name, check=False)
        docker("volume", "rm", "-f", self.volume, check=False)

    def logs(self, lines: int = 80) -> str:
        result = docker("logs", "--tail", str(lines), self.name, check=False)
        return result.stdout + result.stderr

    def worker_pids(self, model: str) -> set[int]:
        return set(json.loads(docker("exec", self.name, "python", "-c", WORKER_PIDS, model).stdout))

    def container_ip(self) -> str:
        return container_ip(self.name)

    def process_uids(self) -> dict[int, int]:
        """{host pid: uid} of every process in the container."""
        rows = docker("top", self.name, "-eo", "pid,uid").stdout.splitlines()[1:]
        return {int(pid): int(uid) for pid, uid in (row.split() for row in rows)}


def quantity(value: str, unit: str) -> str:
    """A Kubernetes CPU or memory quantity as docker run's --cpus / --memory take it."""
    if unit == "cpu":
        return str(int(value[:-1]) / 1000 if value.endswith("m") else float(value))
    scales = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30}
    return str(int(value[:-2]) * scales[value[-2:]] if value[-2:] in scales else int(value))


@dataclass
class KubernetesPod:
    """The manifest's pod run with Docker as the kubelet runs it: an infra container owns the
    network namespace, every container joins it (`--network container:`), volumes, Secret,
    env, ConfigMap, users, security settings and CPU/memory limits come from the rendered
    Deployment. Only the gateway's port (the Service's) is published, on 127.0.0.1."""

    deployment: dict
    config_maps: dict[str, dict[str, str]]
    images: dict[str, str]          # container name -> local image
    secret_dir: Path                # what the kubelet would mount for the Secret volume
    name: str = field(default_factory=lambda: unique("pod"))
    port: int = field(default_factory=free_port)

    @property
    def spec(self) -> dict:
        return self.deployment["spec"]["template"]["spec"]

    def container_name(self, container: str) -> str:
        return f"{self.name}-{container}"

    def container(self, name: str) -> dict:
        (found,) = [item for item in self.spec["containers"] if item["name"] == name]
        return found

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def volume_args(self, mounts: list[dict]) -> list[str]:
        volumes = {volume["name"]: volume for volume in self.spec["volumes"]}
        args = []
        for mount in mounts:
            volume, read_only = volumes[mount["name"]], ":ro" if mount.get("readOnly") else ""
            if "secret" in volume:
                args += ["-v", f"{self.secret_dir}:{mount['mountPath']}:ro"]
            elif volume["emptyDir"].get("medium") == "Memory":
                args += ["--tmpfs", f"{mount['mountPath']}:size={volume['emptyDir']['sizeLimit'].removesuffix('i')}"]
            else:
                args += ["-v", f"{self.name}-{volume['name']}:{mount['mountPath']}{read_only}"]
        return args

    def env_args(self, container: dict, pod_ip: str) -> list[str]:
        env = {}
        for source in container.get("envFrom", []):
            env.update(self.config_maps[source["configMapRef"]["name"]])
        for item in container.get("env", []):
            if "valueFrom" in item:
                assert item["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP", item
                env[item["name"]] = pod_ip
            else:
                env[item["name"]] = item["value"].replace("$(POD_IP)", env.get("POD_IP", pod_ip))
        return [argument for name, value in env.items() for argument in ("-e", f"{name}={value}")]

    def run_args(self, container: dict, pod_ip: str) -> list[str]:
        pod_security, security = self.spec["securityContext"], container["securityContext"]
        args = ["--name", self.container_name(container["name"]), "--network", f"container:{self.name}-infra",
                "--user", f"{pod_security['runAsUser']}:{pod_security['runAsGroup']}",
                "--group-add", str(pod_security["fsGroup"])]
        if security.get("readOnlyRootFilesystem"):
            args.append("--read-only")
        if security.get("allowPrivilegeEscalation") is False:
            args += ["--security-opt", "no-new-privileges"]
        args += [argument for capability in security["capabilities"]["drop"] for argument in ("--cap-drop", capability)]
        limits = container.get("resources", {}).get("limits", {})
        if "cpu" in limits:
            args += ["--cpus", quantity(limits["cpu"], "cpu")]
        if "memory" in limits:
            args += ["--memory", quantity(limits["memory"], "memory")]
        args += self.volume_args(container.get("volumeMounts", [])) + self.env_args(container, pod_ip)
        command = container.get("command", [])
        if command:
            args += ["--entrypoint", command[0]]
        return [*args, self.images[container["name"]], *command[1:], *container.get("args", [])]

    def start(self) -> None:
        service_port = self.container("gateway")["ports"][0]["containerPort"]
        any_image = next(iter(self.images.values()))
        docker("run", "-d", "--name", f"{self.name}-infra", "-p", f"127.0.0.1:{self.port}:{service_port}", *HARDENED,
               "--entrypoint", "sleep", any_image, "infinity")
        pod_ip = self.ip()
        # fsGroup: the kubelet makes every emptyDir group-owned by the pod's fsGroup, group-writable.
        for volume in self.spec["volumes"]:
            if "emptyDir" in volume and volume["emptyDir"].get("medium") != "Memory":
                docker("run", "--rm", "--user", "0", "-v", f"{self.name}-{volume['name']}:/volume", "--entrypoint",
                       "sh", any_image, "-c", f"chgrp {self.spec['securityContext']['fsGroup']} /volume "
                                              "&& chmod 2775 /volume")
        for container in self.spec["containers"]:
            docker("run", "-d", *self.run_args(container, pod_ip))

    def probe(self, container: str, kind: str) -> bool:
        """The container's exec probe, run as the kubelet runs it (httpGet probes: through the published port)."""
        probe = self.container(container)[kind]
        if "exec" in probe:
            command = probe["exec"]["command"]
            return docker("exec", self.container_name(container), *command, check=False).returncode == 0
        path = probe["httpGet"]["path"]
        with contextlib.suppress(requests.RequestException):
            return requests.get(self.url + path, timeout=probe.get("timeoutSeconds", 1)).status_code == 200
        return False

    def wait_until_ready(self, timeout: float = 240) -> None:
        deadline = time.monotonic() + timeout
        while not all(self.probe(item["name"], "readinessProbe") for item in self.spec["containers"]):
            stopped = [item["name"] for item in self.spec["containers"]
                       if inspect(self.container_name(item["name"]), "{{.State.Status}}") != "running"]
            if stopped or time.monotonic() > deadline:
                raise RuntimeError("the pod never became ready:\n" + self.logs())
            time.sleep(2)

    def write_secret(self, keys: list[str]) -> None:
        """The Secret's `keys` file, swapped at once as the kubelet updates a mounted Secret."""
        staged = self.secret_dir / ".keys.new"
        staged.write_text("\n".join(keys) + "\n")
        os.chown(staged, 0, self.spec["securityContext"]["fsGroup"])
        (secret,) = [volume["secret"] for volume in self.spec["volumes"] if "secret" in volume]
        staged.chmod(secret.get("defaultMode", 0o644))
        staged.replace(self.secret_dir / "keys")

    @contextlib.contextmanager
    def running(self, client_keys: list[str], timeout: float = 240):
        self.secret_dir.mkdir(parents=True, exist_ok=True)
        self.secret_dir.chmod(0o755)  # as the kubelet's Secret volume: the files' modes do the protecting
        self.write_secret(client_keys)
        try:
            self.start()
            self.wait_until_ready(timeout)
            yield self
        finally:
            self.remove()

    def ip(self) -> str:
        """The pod's address: its infra container's, which every container of the pod shares."""
        return container_ip(f"{self.name}-infra")

    def exec(self, container: str, *command: str) -> str:
        return docker("exec", self.container_name(container), *command).stdout

    def started_at(self, container: str) -> str:
        return inspect(self.container_name(container), "{{.State.StartedAt}}")

    def logs(self) -> str:
        return "\n".join(f"--- {item['name']}\n" + docker("logs", "--tail", "40", self.container_name(item["name"]),
                                                          check=False).stderr for item in self.spec["containers"])

    def remove(self) -> None:
        for container in [*(item["name"] for item in self.spec["containers"]), "infra"]:
            docker("rm", "-f", self.container_name(container), check=False)
        for volume in self.spec["volumes"]:
            docker("volume", "rm", "-f", f"{self.name}-{volume['name']}", check=False)
