"""The container and cluster files, checked offline: lint, schemas, and the security they promise."""

from __future__ import annotations

import copy
import re
import subprocess
import sys
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from deploy.serve_settings import settings_from_env
from tests.containers import HARDENED, rendered_manifests

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
VENV_BIN = Path(sys.executable).parent
K8S_VERSION = "1.37.0"
OVERLAYS = ["cpu", "gpu"]
GATEWAY_PORT, INFERENCE_PORT, MANAGEMENT_PORT, METRICS_PORT = 8000, 8080, 8081, 8082
GRPC_INFERENCE_PORT = 7070


# --- Dockerfile --------------------------------------------------------------------------------
def test_hadolint_finds_nothing_in_the_dockerfile():
    result = subprocess.run([str(VENV_BIN / "hadolint"), "--failure-threshold", "style", "--no-color",
                             str(DEPLOY / "Dockerfile")], capture_output=True, text=True)
    assert result.returncode == 0 and result.stdout == "", result.stdout + result.stderr


def test_every_hadolint_exception_is_explained_on_the_line_above():
    lines = (DEPLOY / "Dockerfile").read_text().splitlines()
    for number, line in enumerate(lines):
        if "hadolint ignore" in line:
            assert lines[number - 1].startswith("#") and "hadolint" not in lines[number - 1], line


@pytest.fixture(scope="module")
def dockerfile() -> str:
    return (DEPLOY / "Dockerfile").read_text()


def stages(dockerfile: str) -> dict[str, str]:
    return dict(re.findall(r"^FROM \S+ AS ([\w-]+)\n(.*?)(?=^FROM |\Z)", dockerfile, re.M | re.S))


# The two images' stages and their inference ports (HTTP, and gRPC where served).
IMAGES = {"runtime": f"{INFERENCE_PORT} {GRPC_INFERENCE_PORT}", "gateway": str(GATEWAY_PORT)}


@pytest.mark.parametrize("stage", IMAGES)
def test_each_image_runs_as_a_numeric_non_root_user(dockerfile, stage):
    users = re.findall(r"^USER (\S+)", stages(dockerfile)[stage], re.M)
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"


@pytest.mark.parametrize("stage, port", IMAGES.items())
def test_each_image_exposes_only_its_inference_ports(dockerfile, stage, port):
    assert re.findall(r"^EXPOSE (.+)$", stages(dockerfile)[stage], re.M) == [port]


def test_the_default_build_is_the_serving_image(dockerfile):
    assert list(stages(dockerfile))[-1] == "runtime"


def test_healthcheck_is_the_readiness_check_not_ping(dockerfile):
    healthcheck = re.search(r"^HEALTHCHECK .*?CMD (\[.*?\])$", dockerfile, re.M | re.S).group(1)
    assert "deploy.readiness" in healthcheck and "--live" not in healthcheck and "ping" not in healthcheck


def test_image_copies_only_archives_checksums_config_and_deploy_code(dockerfile):
    sources = [source for line in re.findall(r"^COPY (?!--from)(.+?)\s+\S+$", dockerfile.replace("\\\n", " "), re.M)
               for source in line.split()]
    allowed = re.compile(r"^(\$\{MODEL_STORE\}/\*\.mar|\$\{MODEL_STORE\}/SHA256SUMS|config\.properties|"
                         r"deploy/[a-z_]+\.py|deploy/requirements-serve\.txt|deploy/frontend/\*\.java|"
                         r"deploy/config/(log4j2\.xml|gateway\.nginx\.conf|gateway\.js))$")
    assert sources and all(allowed.match(source) for source in sources), sources


def deploy_modules_needed(module: str, seen: set[str] | None = None) -> set[str]:
    """deploy/<module>.py and every deploy module it imports, transitively."""
    seen = seen if seen is not None else set()
    seen.add(module)
    for imported in re.findall(r"^from deploy\.(\w+) import", (DEPLOY / f"{module}.py").read_text(), re.M):
        if imported not in seen:
            deploy_modules_needed(imported, seen)
    return seen


@pytest.mark.parametrize("stage, commands", [("runtime", ("entrypoint", "readiness")), ("gateway", ("gateway",))])
def test_each_image_holds_every_deploy_module_its_commands_import(dockerfile, stage, commands):
    copied = set(re.findall(r"deploy/(\w+)\.py", stages(dockerfile)[stage]))
    for command in commands:
        assert deploy_modules_needed(command) <= copied, command


def test_build_context_is_an_allow_list_without_keys():
    ignore = [line for line in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "*"
    assert not any("key" in line or ".venv" in line or "artifacts" in line for line in ignore[1:])


def test_cpu_variant_takes_torch_from_the_pytorch_cpu_index_and_gpu_from_a_cuda_build(dockerfile):
    venvs = stages(dockerfile)
    assert "download.pytorch.org/whl/cpu" in venvs["venv-cpu"] and "+cpu" in venvs["venv-cpu"]
    assert "whl/cpu" not in venvs["venv-gpu"] and "torch==" in venvs["venv-gpu"]


def pins(path: Path) -> dict[str, str]:
    pairs = (line.split("==") for line in path.read_text().splitlines() if "==" in line and not line.startswith("#"))
    return {name.strip().lower(): version.strip() for name, version in pairs}


def test_image_pins_the_versions_the_tests_ran_with():
    serve, tested = pins(DEPLOY / "requirements-serve.txt"), pins(REPO / "requirements.txt")
    assert serve and all(tested.get(name) == version for name, version in serve.items()), (serve, tested)


# --- Kubernetes --------------------------------------------------------------------------------
def one(overlay: str, kind: str) -> dict:
    (resource,) = [doc for doc in rendered_manifests(overlay) if doc["kind"] == kind]
    return resource


def pod_spec(overlay: str) -> dict:
    return one(overlay, "Deployment")["spec"]["template"]["spec"]


def container(spec: dict, name: str) -> dict:
    (found,) = [item for item in spec["containers"] if item["name"] == name]
    return found


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_rendered_manifest_is_valid_for_kubernetes(overlay):
    kinds = {doc["kind"] for doc in rendered_manifests(overlay)}
    assert kinds == {"Deployment", "Service", "HorizontalPodAutoscaler", "PodDisruptionBudget", "NetworkPolicy",
                     "ConfigMap"}
    for doc in rendered_manifests(overlay):
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_schema_validation_rejects_an_unknown_field():
    broken = copy.deepcopy(one("cpu", "Deployment"))
    broken["spec"]["template"]["spec"]["containers"][0]["securityContxt"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pods_run_non_root_without_privilege_on_a_read_only_root(overlay):
    spec = pod_spec(overlay)
    assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
    assert spec["automountServiceAccountToken"] is False
    for item in spec["containers"]:
        security = item["securityContext"]
        assert security["allowPrivilegeEscalation"] is False and security["privileged"] is False
        assert security["readOnlyRootFilesystem"] is True and security["capabilities"]["drop"] == ["ALL"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_write_only_to_their_emptydirs_and_the_gateway_only_reads_the_shared_ones(overlay):
    spec = pod_spec(overlay)
    volumes = {volume["name"]: volume for volume in spec["volumes"]}
    torchserve = {mount["mountPath"]: mount for mount in container(spec, "torchserve")["volumeMounts"]}
    assert set(torchserve) == {"/srv/state", "/tmp"}
    assert all("emptyDir" in volumes[mount["name"]] for mount in torchserve.values())
    gateway_writes = [mount for mount in container(spec, "gateway")["volumeMounts"] if not mount.get("readOnly")]
    assert [(mount["mountPath"], volumes[mount["name"]]["emptyDir"]["medium"]) for mount in gateway_writes] == \
        [("/tmp", "Memory")]
    assert not {mount["name"] for mount in gateway_writes} & {mount["name"] for mount in torchserve.values()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_and_gateway_read_the_key_file_the_entrypoint_writes(overlay):
    spec = pod_spec(overlay)
    run_dir = one(overlay, "ConfigMap")["data"]["SERVE_RUN_DIR"]
    key_file = f"{run_dir}/key_file.json"
    torchserve = container(spec, "torchserve")
    (state,) = [mount["mountPath"] for mount in torchserve["volumeMounts"]
                if run_dir.startswith(mount["mountPath"] + "/")]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        command = torchserve[probe]["exec"]["command"]
        assert command[command.index("--key-file") + 1] == key_file, probe
    gateway = container(spec, "gateway")
    assert {item["name"]: item["value"] for item in gateway["env"]}["SERVE_GATEWAY_TS_KEY_FILE"] == key_file
    assert state in {mount["mountPath"] for mount in gateway["volumeMounts"]}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_service_exposes_only_the_gateway(overlay):
    spec = pod_spec(overlay)
    (port,) = one(overlay, "Service")["spec"]["ports"]
    (target,) = [item for item in container(spec, "gateway")["ports"] if item["name"] == port["targetPort"]]
    assert target["containerPort"] == GATEWAY_PORT
    declared = {item["containerPort"] for each in spec["containers"] for item in each.get("ports", [])}
    assert MANAGEMENT_PORT not in declared and INFERENCE_PORT not in declared


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_check_readiness_liveness_and_slow_starts(overlay):
    torchserve = container(pod_spec(overlay), "torchserve")
    readiness = torchserve["readinessProbe"]["exec"]["command"]
    assert readiness[:3] == ["python", "-m", "deploy.readiness"] and "--live" not in readiness
    assert torchserve["startupProbe"]["exec"]["command"] == readiness
    assert torchserve["startupProbe"]["periodSeconds"] * torchserve["startupProbe"]["failureThreshold"] >= 180
    assert "--live" in torchserve["livenessProbe"]["exec"]["command"]
    gateway = container(pod_spec(overlay), "gateway")
    assert gateway["readinessProbe"] and gateway["livenessProbe"]


def test_gpu_limits_node_selector_and_tolerations_only_in_the_gpu_overlay():
    gpu, cpu = container(pod_spec("gpu"), "torchserve"), container(pod_spec("cpu"), "torchserve")
    assert gpu["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert "nvidia.com/gpu" not in cpu["resources"].get("limits", {})
    assert pod_spec("gpu")["nodeSelector"] and pod_spec("gpu")["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert "nvidia" not in yaml.safe_dump(list(rendered_manifests("cpu")))


def test_cpu_pods_get_a_whole_core_quota_the_entrypoint_can_divide():
    resources = container(pod_spec("cpu"), "torchserve")["resources"]
    assert resources["requests"]["cpu"] == resources["limits"]["cpu"]  # Guaranteed QoS: the quota is the limit
    assert resources["limits"]["cpu"].isdigit()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_network_policy_admits_only_the_gateway_and_metrics_from_monitoring(overlay):
    policy = one(overlay, "NetworkPolicy")["spec"]
    labels = one(overlay, "Deployment")["spec"]["template"]["metadata"]["labels"]
    assert policy["podSelector"]["matchLabels"].items() <= labels.items() and policy["podSelector"]["matchLabels"]
    assert set(policy["policyTypes"]) == {"Ingress", "Egress"} and policy["egress"] == []
    by_port = {port["port"]: rule["from"] for rule in policy["ingress"] for port in rule["ports"]}
    assert set(by_port) == {GATEWAY_PORT, METRICS_PORT}
    assert by_port[METRICS_PORT] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name":
                                                                            "monitoring"}}}]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pdb_hpa_and_service_select_these_pods(overlay):
    labels = one(overlay, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for kind in ("PodDisruptionBudget", "Service"):
        spec = one(overlay, kind)["spec"]
        selector = spec["selector"].get("matchLabels", spec["selector"])
        assert selector and selector.items() <= labels.items(), kind
    target = one(overlay, "HorizontalPodAutoscaler")["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("Deployment", one(overlay, "Deployment")["metadata"]["name"])


def pod_environment(overlay: str) -> dict[str, str]:
    """The torchserve container's environment as the kubelet builds it, for a sample pod IP."""
    torchserve = container(pod_spec(overlay), "torchserve")
    (source,) = torchserve["envFrom"]
    assert source["configMapRef"]["name"] == one(overlay, "ConfigMap")["metadata"]["name"]
    env = dict(one(overlay, "ConfigMap")["data"], POD_IP="10.0.0.7")
    for item in torchserve["env"]:
        if "value" in item:
            env[item["name"]] = re.sub(r"\$\((\w+)\)", lambda match: env[match.group(1)], item["value"])
    return env


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_entrypoint_accepts_the_pod_settings_and_keeps_management_on_loopback(overlay, tmp_path):
    settings = settings_from_env({**pod_environment(overlay), "SERVE_MODELS": "mnist", "SERVE_CPU_COUNT": "2",
                                  "SERVE_GPU_COUNT": "1" if overlay == "gpu" else "0",
                                  "SERVE_RUN_DIR": str(tmp_path)})
    assert settings.inference_address == "http://127.0.0.1:8080"  # only the gateway faces the network
    assert settings.grpc_inference_address == "127.0.0.1"  # the image's 0.0.0.0 is overridden in the pod
    assert settings.management_address == "http://127.0.0.1:8081"
    assert settings.metrics_address == "http://10.0.0.7:8082"


# --- KServe ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def predictor() -> dict:
    service = yaml.safe_load((DEPLOY / "kserve" / "inferenceservice.yaml").read_text())
    assert service["kind"] == "InferenceService" and service["apiVersion"] == "serving.kserve.io/v1beta1"
    assert service["metadata"]["annotations"]["serving.kserve.io/deploymentMode"] == "RawDeployment"
    return service["spec"]["predictor"]


def test_kserve_predictor_is_a_valid_pod_spec(predictor):
    spec = {key: value for key, value in predictor.items() if key not in ("minReplicas", "maxReplicas")}
    kubernetes_validate.validate({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "predictor"},
                                  "spec": spec}, K8S_VERSION, strict=True)


def test_kserve_runs_the_same_pod_as_the_cpu_overlay(predictor):
    spec = pod_spec("cpu")
    for key in ("securityContext", "volumes", "automountServiceAccountToken", "terminationGracePeriodSeconds"):
        assert predictor[key] == spec[key], key
    gateway, torchserve = predictor["containers"]
    assert gateway["name"] == "kserve-container"  # KServe routes to this one
    env = {item["name"]: item.get("value") for item in torchserve["env"] if "value" in item}
    assert env.items() >= one("cpu", "ConfigMap")["data"].items()
    for ours, theirs in ((gateway, container(spec, "gateway")), (torchserve, container(spec, "torchserve"))):
        for key in ("command", "ports", "startupProbe", "readinessProbe", "livenessProbe", "securityContext",
                    "volumeMounts", "resources", "lifecycle"):
            assert ours.get(key) == theirs.get(key), (ours["name"], key)


# --- compose and the example configs ------------------------------------------------------------
def test_compose_publishes_only_inference_on_loopback_and_reserves_gpus_only_for_gpu():
    services = yaml.safe_load((DEPLOY / "compose.yaml").read_text())["services"]
    for name, service in services.items():
        assert service["ports"] == [f"127.0.0.1:${{SERVE_PORT:-{INFERENCE_PORT}}}:{INFERENCE_PORT}"], name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
        assert "deploy" in service if name == "gpu" else "deploy" not in service
    devices = services["gpu"]["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": 1, "capabilities": ["gpu"]}]


def env_file(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if line and not line.startswith("#"))


@pytest.mark.parametrize("variant", ["cpu", "gpu"])
def test_example_configs_are_what_the_entrypoint_renders(variant):
    env = {**env_file(DEPLOY / "config" / f"{variant}.env"), "PYTHONPATH": str(REPO)}
    for flag, suffix in (("--print-config", "properties"), ("--print-model-config", "model-config.yaml")):
        shown = subprocess.run([sys.executable, "-m", "deploy.entrypoint", flag], cwd=REPO, env=env,
                               capture_output=True, text=True, check=True).stdout
        committed = (DEPLOY / "config" / f"{variant}.{suffix}").read_text().split("\n", 1)[1]
        assert committed == shown, f"deploy/config/{variant}.{suffix} is stale: run `make deploy-config`"


def test_make_docker_run_uses_the_flags_the_container_tests_run_the_image_with():
    recipe = (REPO / "Makefile").read_text().split("\ndocker-run:", 1)[1].split("\n\n", 1)[0].replace("\\\n", " ")
    run_line = " ".join(recipe.split())
    assert " ".join(HARDENED) in run_line and "-p 127.0.0.1:8080:8080" in run_line, run_line
