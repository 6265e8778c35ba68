"""The cluster manifests build with kustomize and every object in them validates.

Core kinds validate strictly (unknown fields rejected) against the Kubernetes schemas that
kubernetes-validate ships; Argo kinds against the vendored Argo v4.1.2 schema plus a key-name check
(that schema never forbids extra keys); OpenFaaS Functions against the CRD's published field list.
Cross references (Secrets, ConfigMaps, PVCs, Service selectors, the endpoints in stack.yml) are
checked as a cluster would resolve them.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from jsonschema import Draft202012Validator

from tests.workflows.test_iteration import unknown_keys
from workflows.gateway.stack import parse_duration

ROOT = Path(__file__).resolve().parents[2]
MANIFESTS = ROOT / "manifests"
ARGO_SCHEMA = ROOT / "tests" / "schemas" / "argo-workflows-schema.json"
K8S_VERSION = kubernetes_validate.latest_version()
ARGO_KINDS = {"Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate"}
# The Secrets the prod overlay leaves to the operator (documented in its kustomization.yaml).
OPERATOR_SECRETS = {
    ("ftg", "ftg-minio"),
    ("ftg", "mlflow-db"),
    ("ftg", "mlflow-s3"),
    ("openfaas-fn", "ftg-s3"),
}

# OpenFaaS Function CRD (openfaas.com/v1): the published spec fields and their types.
FUNCTION_FIELDS: dict[str, type] = {
    "name": str,
    "image": str,
    "handler": str,
    "annotations": dict,
    "labels": dict,
    "environment": dict,
    "constraints": list,
    "secrets": list,
    "limits": dict,
    "requests": dict,
    "readOnlyRootFilesystem": bool,
}
FUNCTION_REQUIRED = {"name", "image"}


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.fail("kubectl (with its built-in kustomize) is needed to build the manifests", pytrace=False)
    return kubectl


def kustomize(path: Path) -> list[dict[str, Any]]:
    out = subprocess.run(
        [_kubectl(), "kustomize", str(path)], capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


@cache
def build(overlay: str) -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(MANIFESTS / "overlays" / overlay))


@cache
def _argo_definitions() -> dict[str, Any]:
    definitions: dict[str, Any] = json.loads(ARGO_SCHEMA.read_text())["definitions"]
    return definitions


def argo_errors(obj: dict[str, Any]) -> list[str]:
    ref = f"io.argoproj.workflow.v1alpha1.{obj['kind']}"
    schema = {"$ref": f"#/definitions/{ref}", "definitions": _argo_definitions()}
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}" for e in Draft202012Validator(schema).iter_errors(obj)
    ]
    errors += [f"unknown key {key}" for key in unknown_keys(obj, schema, obj["kind"])]
    return errors


def function_errors(obj: dict[str, Any]) -> list[str]:
    spec = obj.get("spec", {})
    errors = [f"missing spec.{field}" for field in sorted(FUNCTION_REQUIRED - set(spec))]
    for key, value in spec.items():
        if key not in FUNCTION_FIELDS:
            errors.append(f"unknown field spec.{key}")
        elif not isinstance(value, FUNCTION_FIELDS[key]):
            errors.append(f"spec.{key} is {type(value).__name__}, not {FUNCTION_FIELDS[key].__name__}")
        elif isinstance(value, dict) and not all(isinstance(v, str) for v in value.values()):
            errors.append(f"spec.{key} must map to strings")
        elif isinstance(value, list) and not all(isinstance(v, str) for v in value):
            errors.append(f"spec.{key} must list strings")
    for key in ("limits", "requests"):
        errors += [
            f"spec.{key}.{k} is not cpu/memory" for k in spec.get(key, {}) if k not in {"cpu", "memory"}
        ]
    return errors


def validation_errors(obj: dict[str, Any]) -> list[str]:
    """Why ``obj`` would be refused; every kind must be one this test knows how to check."""
    api, kind = obj.get("apiVersion", ""), obj.get("kind", "")
    if api.startswith("argoproj.io/") and kind in ARGO_KINDS:
        return argo_errors(obj)
    if api == "openfaas.com/v1" and kind == "Function":
        return function_errors(obj)
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        return [f"{'/'.join(map(str, exc.path))}: {exc.message}"]
    except kubernetes_validate.SchemaNotFoundError:
        return [f"no schema for {api} {kind}: teach this test how to validate it"]
    return []


def _name(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata'].get('namespace', '-')}/{obj['metadata']['name']}"


def _index(objs: tuple[dict[str, Any], ...]) -> set[tuple[str, str, str]]:
    return {(o["kind"], o["metadata"].get("namespace", ""), o["metadata"]["name"]) for o in objs}


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any] | None:
    if obj["kind"] in {"Deployment", "StatefulSet", "Job"}:
        spec: dict[str, Any] = obj["spec"]["template"]["spec"]
        return spec
    return None


def _references(pod: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(kind, name) of every Secret, ConfigMap and PVC a pod spec needs."""
    for container in pod.get("initContainers", []) + pod["containers"]:
        for source in container.get("envFrom", []):
            if "secretRef" in source:
                yield "Secret", source["secretRef"]["name"]
            if "configMapRef" in source:
                yield "ConfigMap", source["configMapRef"]["name"]
        for var in container.get("env", []):
            ref = var.get("valueFrom", {})
            if "secretKeyRef" in ref:
                yield "Secret", ref["secretKeyRef"]["name"]
            if "configMapKeyRef" in ref:
                yield "ConfigMap", ref["configMapKeyRef"]["name"]
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            yield "Secret", volume["secret"]["secretName"]
        if "configMap" in volume:
            yield "ConfigMap", volume["configMap"]["name"]
        if "persistentVolumeClaim" in volume:
            yield "PersistentVolumeClaim", volume["persistentVolumeClaim"]["claimName"]
    if "serviceAccountName" in pod:
        yield "ServiceAccount", pod["serviceAccountName"]


# --------------------------------------------------------------------------- build and validate


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlay_builds_and_every_object_validates(overlay: str) -> None:
    objs = build(overlay)
    problems = {_name(o): errs for o in objs if (errs := validation_errors(o))}
    assert problems == {}
    assert len(_index(objs)) == len(objs), "two objects with the same kind, namespace and name"


def test_standard_edition_function_resources_validate() -> None:
    # Applied on OpenFaaS Standard only (the operator owns the CRD); CE deploys stack.yml with faas-cli.
    objs = kustomize(MANIFESTS / "openfaas")
    assert {o["kind"] for o in objs} == {"Function"}
    assert {_name(o): errs for o in objs if (errs := validation_errors(o))} == {}
    stack = yaml.safe_load((ROOT / "functions" / "stack.yml").read_text())["functions"]
    for obj in objs:
        assert obj["metadata"]["namespace"] == "openfaas-fn"
        assert obj["spec"]["secrets"] == stack[obj["metadata"]["name"]]["secrets"]


def test_the_validators_reject_what_a_cluster_would() -> None:
    # A misspelled field in a core kind, an unknown Argo key, an unknown Function field, an unknown kind.
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}, "dta": {}}
    assert validation_errors(config_map)
    template = next(o for o in build("dev") if o["kind"] == "WorkflowTemplate")
    bad_template = {**template, "spec": {**template["spec"], "entryPoint": "iteration"}}
    assert any("entryPoint" in e for e in validation_errors(bad_template))
    function = {"apiVersion": "openfaas.com/v1", "kind": "Function", "metadata": {"name": "f"}}
    assert validation_errors({**function, "spec": {"name": "f"}}) == ["missing spec.image"]
    assert validation_errors({**function, "spec": {"name": "f", "image": "i", "env": {}}})
    assert validation_errors({"apiVersion": "example.com/v1", "kind": "Gadget", "metadata": {"name": "g"}})


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_overlays_ship_every_template_the_driver_installs(overlay: str) -> None:
    """One-iteration and chained, on- and off-policy, in the driver's Argo namespace, as the code renders
    them: a Workflow of K iterations (``--iterations-per-workflow``) finds its template as applied."""
    from ftg_common.settings import Settings
    from workflows.iteration import iteration_manifest
    from workflows.iteration_chain import chain_manifest

    namespace = Settings.model_fields["argo_namespace"].default
    shipped = {
        o["metadata"]["name"]: o
        for o in build(overlay)
        if o["kind"] == "WorkflowTemplate" and o["metadata"]["namespace"] == namespace
    }
    expected = [
        manifest_of(namespace=namespace, off_policy=off_policy)
        for manifest_of in (iteration_manifest, chain_manifest)
        for off_policy in (False, True)
    ]
    assert shipped == {m["metadata"]["name"]: m for m in expected}
    assert set(shipped) == {"ftg-iteration", "ftg-iteration-offpolicy"} | {
        "ftg-iteration-chain",
        "ftg-iteration-offpolicy-chain",
    }


# --------------------------------------------------------------------------- what the stack needs


def test_dev_overlay_is_complete_on_its_own() -> None:
    """Everything a workload refers to is in the dev overlay, and Services select the pods they serve."""
    objs = build("dev")
    index = _index(objs)
    assert ("Namespace", "", "ftg") in index
    for obj in objs:
        pod = _pod_spec(obj)
        if pod is None:
            continue
        namespace = obj["metadata"]["namespace"]
        for kind, name in _references(pod):
            assert (kind, namespace, name) in index, f"{_name(obj)} needs {kind}/{name}"
    pods = [(o["metadata"]["namespace"], o["spec"]["template"]) for o in objs if _pod_spec(o) is not None]
    for svc in (o for o in objs if o["kind"] == "Service"):
        namespace, selector = svc["metadata"]["namespace"], svc["spec"]["selector"]
        matches = [
            t
            for ns, t in pods
            if ns == namespace and selector.items() <= t["metadata"].get("labels", {}).items()
        ]
        assert matches, f"{_name(svc)} selects no pod"
        ports = {p["name"] for t in matches for c in t["spec"]["containers"] for p in c.get("ports", [])}
        for port in svc["spec"]["ports"]:
            assert port["targetPort"] in ports, f"{_name(svc)} targets a port no pod names"


def test_prod_overlay_leaves_credentials_and_the_database_to_the_operator() -> None:
    objs = build("prod")
    index = _index(objs)
    assert not [o for o in objs if _is_credential(o)], "prod must not ship credentials"
    assert not {name for kind, _, name in index if name == "mlflow-postgres"}
    needed = {
        (o["metadata"]["namespace"], name)
        for o in objs
        if (pod := _pod_spec(o)) is not None
        for kind, name in _references(pod)
        if kind == "Secret"
    }
    # The functions' secret is needed by the Function/stack.yml deployment, not by a pod here.
    assert needed == OPERATOR_SECRETS - {("openfaas-fn", "ftg-s3")}
    dev_secrets = {
        (o["metadata"]["namespace"], o["metadata"]["name"]) for o in build("dev") if _is_credential(o)
    }
    assert dev_secrets == OPERATOR_SECRETS


def _is_credential(obj: dict[str, Any]) -> bool:
    # A service-account token Secret ships empty: Kubernetes' token controller fills it in.
    return obj["kind"] == "Secret" and obj.get("type") != "kubernetes.io/service-account-token"


def _services(objs: tuple[dict[str, Any], ...]) -> dict[str, set[int]]:
    """``name.namespace`` -> ports, as the functions and the driver reach them by DNS."""
    return {
        f"{o['metadata']['name']}.{o['metadata']['namespace']}": {p["port"] for p in o["spec"]["ports"]}
        for o in objs
        if o["kind"] == "Service"
    }


@pytest.mark.parametrize("overlay", ["dev", "prod"])
def test_the_functions_endpoints_exist(overlay: str) -> None:
    from urllib.parse import urlsplit

    services = _services(build(overlay))
    stack = yaml.safe_load((ROOT / "functions" / "stack.yml").read_text())["functions"]
    for fn in stack.values():
        env = fn["environment"]
        for url in (env["FTG_S3_ENDPOINT_URL"], env["FTG_META_URL"]):
            parts = urlsplit(url)
            assert parts.port in services.get(str(parts.hostname), set()), url
        bucket = urlsplit(env["FTG_STORE_URL"]).netloc
        job = next(o for o in build(overlay) if o["metadata"]["name"] == "minio-create-buckets")
        env_vars = {
            v["name"]: v.get("value") for v in job["spec"]["template"]["spec"]["containers"][0]["env"]
        }
        assert bucket in env_vars["BUCKETS"].split()
    assert 5000 in services["mlflow.ftg"] and 9090 in services["prometheus.ftg"]


def test_mlflow_tracks_in_postgresql_with_artifacts_on_minio() -> None:
    objs = build("dev")
    mlflow = next(o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "mlflow")
    container = mlflow["spec"]["template"]["spec"]["containers"][0]
    script = container["args"][0]
    assert '--backend-store-uri "$MLFLOW_BACKEND_STORE_URI"' in script
    assert "--artifacts-destination s3://mlflow/" in script
    env = {v["name"]: v for v in container["env"]}
    assert env["MLFLOW_S3_ENDPOINT_URL"]["value"] == "http://minio:9000"
    db = next(o for o in objs if o["kind"] == "Secret" and o["metadata"]["name"] == "mlflow-db")["stringData"]
    assert db["MLFLOW_BACKEND_STORE_URI"].startswith("postgresql+psycopg://")
    assert (
        f"{db['POSTGRES_USER']}:{db['POSTGRES_PASSWORD']}@mlflow-postgres:5432/{db['POSTGRES_DB']}"
        in (db["MLFLOW_BACKEND_STORE_URI"])
    )


def test_prometheus_scrapes_the_gateway_and_the_functions() -> None:
    config_map = next(
        o for o in build("dev") if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "ftg-prometheus"
    )
    config = yaml.safe_load(config_map["data"]["prometheus.yml"])
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    assert {"openfaas-gateway", "openfaas-functions"} <= set(jobs)
    namespaces = {name: job["kubernetes_sd_configs"][0]["namespaces"]["names"] for name, job in jobs.items()}
    assert namespaces["openfaas-gateway"] == ["openfaas"] and namespaces["openfaas-functions"] == [
        "openfaas-fn"
    ]
    # The gateway's metrics port, from OpenFaaS's docs; the Role lets Prometheus discover the pods.
    assert any(r.get("replacement") == "$1:8082" for r in jobs["openfaas-gateway"]["relabel_configs"])
    roles = {
        (o["metadata"]["namespace"])
        for o in build("dev")
        if o["kind"] == "Role" and "prometheus" in o["metadata"]["name"]
    }
    assert {"openfaas", "openfaas-fn"} <= roles


def test_function_s3_secret_is_an_aws_credentials_file() -> None:
    import configparser

    secret = next(o for o in build("dev") if o["kind"] == "Secret" and o["metadata"]["name"] == "ftg-s3")
    assert secret["metadata"]["namespace"] == "openfaas-fn"
    # OpenFaaS mounts the key as /var/openfaas/secrets/ftg-s3, the store's default credentials file.
    parser = configparser.ConfigParser()
    parser.read_string(secret["stringData"]["ftg-s3"])
    assert {"aws_access_key_id", "aws_secret_access_key"} <= set(parser["default"])
    minio = next(o for o in build("dev") if o["kind"] == "Secret" and o["metadata"]["name"] == "ftg-minio")
    assert parser["default"]["aws_access_key_id"] == minio["stringData"]["MINIO_ROOT_USER"]


# --------------------------------------------------------------------------- Argo controller settings


def test_workflow_controller_patch_sets_a_one_second_requeue(tmp_path: Path) -> None:
    """The controller kustomization fetches Argo's release; here a stand-in Deployment of the same name
    and container takes its place, so the patch is proven to merge and the result to validate."""
    work = tmp_path / "controller"
    shutil.copytree(MANIFESTS / "argo" / "controller", work)
    kustomization = yaml.safe_load((work / "kustomization.yaml").read_text())
    [remote] = kustomization["resources"]
    assert remote.startswith("https://github.com/argoproj/argo-workflows/releases/download/v4.1.2/")
    stand_in = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "workflow-controller"},
        "spec": {
            "selector": {"matchLabels": {"app": "workflow-controller"}},
            "template": {
                "metadata": {"labels": {"app": "workflow-controller"}},
                "spec": {
                    "containers": [
                        {
                            "name": "workflow-controller",
                            "image": "quay.io/argoproj/workflow-controller:v4.1.2",
                            "env": [{"name": "LEADER_ELECTION_IDENTITY", "value": "x"}],
                        }
                    ]
                },
            },
        },
    }
    (work / "install.yaml").write_text(yaml.safe_dump(stand_in))
    kustomization["resources"] = ["install.yaml"]
    (work / "kustomization.yaml").write_text(yaml.safe_dump(kustomization))
    [deployment] = kustomize(work)
    assert validation_errors(deployment) == []
    assert deployment["metadata"]["namespace"] == "argo"
    env = {v["name"]: v["value"] for v in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["LEADER_ELECTION_IDENTITY"] == "x", (
        "the patch must add to the controller's env, not replace it"
    )
    assert parse_duration(env["DEFAULT_REQUEUE_TIME"]) == 1.0
    assert parse_duration(env["ARGO_AGENT_PATCH_RATE"]) <= parse_duration(env["DEFAULT_REQUEUE_TIME"])


# --------------------------------------------------------------------------- make deploy


def test_make_deploy_applies_the_dev_overlay() -> None:
    out = subprocess.run(
        ["make", "-n", "deploy"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert out.returncode == 0, out.stderr
    assert "kubectl apply -k manifests/overlays/dev" in out.stdout
