"""The KServe InferenceService, checked whole against KServe's own CRD schema (deploy/kserve/crd/)."""

from __future__ import annotations

import copy
import hashlib
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
KSERVE = REPO / "deploy" / "kserve"
SCHEMA = KSERVE / "crd" / "inferenceservice-v1beta1.schema.json"

# The CRD leaves metadata to the API server; these are the ObjectMeta fields an InferenceService
# manifest sets, and KServe's name rule (IsvcNameFmt, a DNS-1035 label).
OBJECT_META = {"type": "object", "required": ["name"], "additionalProperties": False, "properties": {
    "name": {"type": "string", "pattern": "^[a-z]([-a-z0-9]*[a-z0-9])?$", "maxLength": 63},
    "namespace": {"type": "string"},
    "labels": {"type": "object", "additionalProperties": {"type": "string"}},
    "annotations": {"type": "object", "additionalProperties": {"type": "string"}}}}


def structural(schema: dict) -> dict:
    """The API server drops fields that a structural schema does not name; here they are errors."""
    assert not {"allOf", "oneOf", "not", "x-kubernetes-embedded-resource"} & schema.keys()  # not walked below
    if schema.get("x-kubernetes-int-or-string"):
        schema.setdefault("anyOf", [{"type": "integer"}, {"type": "string"}])
    if ("properties" in schema and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")):
        schema["additionalProperties"] = False
    for child in (*schema.get("properties", {}).values(), schema.get("items"), schema.get("additionalProperties"),
                  *schema.get("anyOf", [])):
        if isinstance(child, dict):
            structural(child)
    return schema


@pytest.fixture(scope="module")
def validator() -> jsonschema.Validator:
    schema = structural(json.loads(SCHEMA.read_text()))  # OpenAPI v3.0 schemas are JSON Schema draft 4
    schema["properties"].update(apiVersion={"enum": ["serving.kserve.io/v1beta1"]},
                                kind={"enum": ["InferenceService"]}, metadata=OBJECT_META)
    schema["required"] = ["apiVersion", "kind", "metadata", "spec"]
    return jsonschema.Draft4Validator(schema)


@pytest.fixture(scope="module")
def service() -> dict:
    return yaml.safe_load((KSERVE / "inferenceservice.yaml").read_text())


def errors(validator: jsonschema.Validator, document: dict) -> list[str]:
    return [f"{'.'.join(map(str, error.absolute_path))}: {error.message}" for error in validator.iter_errors(document)]


def test_the_inferenceservice_is_valid_against_kserves_crd(validator, service):
    assert errors(validator, service) == []


def test_the_predictor_speaks_the_open_inference_protocol(service):
    gateway = service["spec"]["predictor"]["containers"][0]  # KServe reads a custom predictor's protocol here
    assert gateway["name"] == "kserve-container"
    assert {"name": "PROTOCOL", "value": "v2"} in gateway["env"]


def test_the_stored_schema_is_the_one_the_readme_names():
    readme = (SCHEMA.parent / "README.md").read_text()
    assert re.search(r"^\| release \| v\d+\.\d+\.\d+ \|$", readme, re.M)
    stored = re.search(r"^\| stored sha256 \| `([0-9a-f]{64})` \|$", readme, re.M).group(1)
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == stored


def changed(service: dict, path: str, old: str | None, new: str, value=None) -> dict:
    """A copy of the service with the key `old` under `path` renamed to `new` (or `new` added with `value`)."""
    document = copy.deepcopy(service)
    node = document
    for step in path.split(".") if path else ():
        node = node[int(step)] if isinstance(node, list) else node[step]
    node[new] = node.pop(old) if old else value
    return document


MISSPELLED = [  # (where, the right key, the wrong one)
    ("", "spec", "spek"),
    ("spec", "predictor", "predicter"),
    ("spec.predictor", "minReplicas", "minReplica"),
    ("spec.predictor.containers.0", "env", "envs"),
    ("spec.predictor.containers.1.readinessProbe", "periodSeconds", "periodSecond"),
    ("spec.predictor.volumes.3.secret", "defaultMode", "defaultmode"),
    ("metadata", "annotations", "annotation"),
]


@pytest.mark.parametrize("where, right, wrong", MISSPELLED, ids=[wrong for _, _, wrong in MISSPELLED])
def test_a_misspelled_field_is_rejected(validator, service, where, right, wrong):
    found = errors(validator, changed(service, where, right, wrong))
    assert any(error.startswith(f"{where}: ") and repr(wrong) in error for error in found), found


ADDED = [  # fields that read plausibly but that KServe does not have there
    ("spec.predictor.containers.0", "imagePullPolicyy", "IfNotPresent"),
    ("spec.predictor", "protocolVersion", "v2"),  # only KServe's model-server specs carry it
    ("spec.predictor.containers.1", "protocolVersion", "v2"),
]


@pytest.mark.parametrize("where, key, value", ADDED, ids=[f"{where}.{key}" for where, key, _ in ADDED])
def test_a_field_the_crd_does_not_name_is_rejected(validator, service, where, key, value):
    found = errors(validator, changed(service, where, None, key, value))
    assert any(error.startswith(f"{where}: ") and repr(key) in error for error in found), found


WRONG_TYPES = [  # (where, key, value)
    ("spec.predictor", "minReplicas", "2"),
    ("spec.predictor.containers.0.ports.0", "containerPort", "8000"),
    ("spec.predictor.containers.0.resources.limits", "cpu", ["500m"]),  # int-or-string, neither
    ("spec.predictor.containers.1.env.1", "value", 1),
    ("metadata.annotations", "serving.kserve.io/targetUtilizationPercentage", 70),
    ("metadata", "name", "TorchServe_Models"),
]


@pytest.mark.parametrize("where, key, value", WRONG_TYPES, ids=[f"{where}.{key}" for where, key, _ in WRONG_TYPES])
def test_a_value_of_the_wrong_type_or_form_is_rejected(validator, service, where, key, value):
    found = errors(validator, changed(service, where, None, key, value))
    assert any(error.startswith(f"{where}.{key}: ") for error in found), found


@pytest.mark.parametrize("cpu", [2, "2", "1500m"])
def test_an_int_or_string_quantity_takes_either(validator, service, cpu):
    assert errors(validator, changed(service, "spec.predictor.containers.1.resources.limits", None, "cpu", cpu)) == []
