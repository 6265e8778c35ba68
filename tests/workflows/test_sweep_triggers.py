"""The in-cluster driver (manifests/driver) and the event triggers that start it (manifests/events).

Argo Events kinds validate against the vendored Argo Events schema (tests/schemas/SOURCE.md) plus a key-name
check; the Workflow a Sensor creates validates against the Argo Workflows schema; the wiring is followed
the way a cluster would: event payload -> trigger parameter -> the driver's ``--config`` -> the file the
pod has (its ConfigMap mount) or the object in MinIO (read here from a real S3-protocol server).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from jsonschema import Draft202012Validator

from ftg_common.config import SweepError
from tests.make_recipes import recipe_commands
from tests.workflows.test_cluster_manifests import (
    MANIFESTS,
    ROOT,
    _services,
    argo_errors,
    build,
    kustomize,
    validation_errors,
)
from workflows import ppo_sweep
from workflows.placement import IN_CLUSTER_GATEWAY

EVENTS_SCHEMA = ROOT / "tests" / "schemas" / "argo-events-schema.json"
EVENT_KINDS = {"EventBus", "EventSource", "Sensor"}
# Event payloads as Argo Events documents them (docs/eventsources/setup/{webhook,minio}.md): `data` only.
WEBHOOK_EVENT = {"header": {"Content-Type": ["application/json"]}, "body": {"config": "cartpole_ab.yaml"}}
UPLOAD_EVENT = {
    "notification": [
        {
            "eventName": "s3:ObjectCreated:Put",
            "s3": {"bucket": {"name": "ftg"}, "object": {"key": "sweep-files/tiny.yaml", "size": 120}},
        }
    ]
}


@cache
def _events_definitions() -> dict[str, Any]:
    definitions: dict[str, Any] = json.loads(EVENTS_SCHEMA.read_text())["definitions"]
    return definitions


def _undeclared(value: Any, schema: dict[str, Any], path: str) -> Iterator[str]:
    """Keys the events schema does not declare (none of its definitions forbids extra keys)."""
    while "$ref" in schema:
        schema = _events_definitions()[schema["$ref"].rsplit("/", 1)[-1]]
    if isinstance(value, dict) and "properties" in schema:
        for key, sub in value.items():
            if key in schema["properties"]:
                yield from _undeclared(sub, schema["properties"][key], f"{path}.{key}")
            else:
                yield f"{path}.{key}"
    elif isinstance(value, dict) and isinstance(schema.get("additionalProperties"), dict):
        for key, sub in value.items():
            yield from _undeclared(sub, schema["additionalProperties"], f"{path}.{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, sub in enumerate(value):
            yield from _undeclared(sub, schema["items"], f"{path}[{i}]")


def events_errors(obj: dict[str, Any]) -> list[str]:
    """Why Argo Events would refuse ``obj`` (its schema, then its key names)."""
    schema = {"$ref": f"#/definitions/io.argoproj.events.v1alpha1.{obj['kind']}"}
    validator = Draft202012Validator({**schema, "definitions": _events_definitions()})
    errors = [f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(obj)]
    return errors + [f"unknown key {k}" for k in _undeclared(obj, schema, obj["kind"])]


@cache
def events() -> tuple[dict[str, Any], ...]:
    return tuple(kustomize(MANIFESTS / "events"))


def _one(objs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    [obj] = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _sweep_template() -> dict[str, Any]:
    return _one(build("prod"), "WorkflowTemplate", "ftg-sweep")


def _go_template(text: str, data: dict[str, Any]) -> str:
    """The two Go template forms the Sensor uses: ``.Input.a.b`` and ``(index .Input.a N).b.c``."""

    def field(value: Any, dotted: str) -> Any:
        for part in filter(None, dotted.split(".")):
            value = value[part]
        return value

    def expand(m: re.Match[str]) -> str:
        expr = m.group(1).strip()
        indexed = re.fullmatch(r"\(index \.Input((?:\.\w+)+) (\d+)\)((?:\.\w+)+)", expr)
        if indexed:
            return str(field(field(data, indexed.group(1))[int(indexed.group(2))], indexed.group(3)))
        assert expr.startswith(".Input."), f"unsupported template {expr!r}"
        return str(field(data, expr.removeprefix(".Input")))

    return re.sub(r"\{\{(.*?)\}\}", expand, text)


# --------------------------------------------------------------------------- validation


def test_event_manifests_validate_against_the_argo_events_schema() -> None:
    objs = events()
    assert {o["kind"] for o in objs} >= EVENT_KINDS
    problems = {
        f"{o['kind']}/{o['metadata']['name']}": errs
        for o in objs
        if (errs := events_errors(o) if o["kind"] in EVENT_KINDS else validation_errors(o))
    }
    assert problems == {}
    assert {o["metadata"]["namespace"] for o in objs if o["kind"] != "ClusterRole"} == {"ftg"}


def test_the_events_validator_rejects_what_argo_events_would() -> None:
    source = _one(events(), "EventSource", "ftg-webhook")
    misspelled = {**source, "spec": {**source["spec"], "webhok": source["spec"]["webhook"]}}
    assert any("webhok" in e for e in events_errors(misspelled))
    hook = source["spec"]["webhook"]["sweep"]
    no_port = {**source, "spec": {"webhook": {"sweep": {k: v for k, v in hook.items() if k != "port"}}}}
    assert any("'port' is a required property" in e for e in events_errors(no_port))
    sensor = _one(events(), "Sensor", "ftg-sweep")
    assert events_errors({**sensor, "spec": {"triggers": sensor["spec"]["triggers"]}})  # no dependencies


def test_each_trigger_creates_a_valid_sweep_workflow_from_the_template() -> None:
    sensor = _one(events(), "Sensor", "ftg-sweep")
    template = _sweep_template()
    declared = [p["name"] for p in template["spec"]["arguments"]["parameters"]]
    triggers = sensor["spec"]["triggers"]
    assert {t["template"]["conditions"] for t in triggers} == {
        d["name"] for d in sensor["spec"]["dependencies"]
    }
    for trigger in triggers:
        k8s = trigger["template"]["k8s"]
        workflow = k8s["source"]["resource"]
        assert argo_errors(workflow) == []
        assert k8s["operation"] == "create" and workflow["kind"] == "Workflow"
        assert workflow["spec"]["workflowTemplateRef"]["name"] == template["metadata"]["name"]
        [parameter] = k8s["parameters"]
        index = int(parameter["dest"].removeprefix("spec.arguments.parameters.").removesuffix(".value"))
        assert workflow["spec"]["arguments"]["parameters"][index]["name"] in declared


def test_sensor_dependencies_name_events_that_exist() -> None:
    sources = {o["metadata"]["name"]: o["spec"] for o in events() if o["kind"] == "EventSource"}
    sensor = _one(events(), "Sensor", "ftg-sweep")
    for dependency in sensor["spec"]["dependencies"]:
        spec = sources[dependency["eventSourceName"]]
        assert any(
            dependency["eventName"] in events_of for events_of in spec.values() if isinstance(events_of, dict)
        )
    account = sensor["spec"]["template"]["serviceAccountName"]
    role = _one(events(), "Role", account)
    assert {"create"} <= set(role["rules"][0]["verbs"]) and role["rules"][0]["resources"] == ["workflows"]
    # The Workflows are created where the template is.
    assert role["metadata"]["namespace"] == _sweep_template()["metadata"]["namespace"]


# --------------------------------------------------------------------------- event -> driver


def _trigger_value(dependency: str, data: dict[str, Any]) -> str | None:
    """The ``config`` argument the Sensor gives the sweep for one event, or None when its filters drop it."""
    sensor = _one(events(), "Sensor", "ftg-sweep")
    dep = next(d for d in sensor["spec"]["dependencies"] if d["name"] == dependency)
    for f in dep["filters"]["data"]:
        value: Any = data
        for part in f["path"].split("."):
            value = value[int(part)] if isinstance(value, list) else value[part]
        if not any(re.search(pattern, str(value)) for pattern in f["value"]):
            return None
    trigger = next(t for t in sensor["spec"]["triggers"] if t["template"]["conditions"] == dependency)
    [parameter] = trigger["template"]["k8s"]["parameters"]
    return _go_template(parameter["src"]["dataTemplate"], data)


def _driver_args(config: str) -> Any:
    """The driver's command line as the ftg-sweep template's container runs it."""
    container = _sweep_template()["spec"]["templates"][0]["container"]
    args = [a.replace("{{inputs.parameters.config}}", config) for a in container["args"]]
    assert container["command"] == ["python", "workflows/ppo_sweep.py"]
    return ppo_sweep.build_parser().parse_args(args)


def test_webhook_names_a_file_of_the_sweeps_configmap() -> None:
    config = _trigger_value("webhook", WEBHOOK_EVENT)
    args = _driver_args(str(config))
    assert args.in_cluster and args.func is ppo_sweep.cmd_submit
    template = _sweep_template()["spec"]
    mount = template["templates"][0]["container"]["volumeMounts"][0]
    volume = next(v for v in template["volumes"] if v["name"] == mount["name"])
    assert args.config == f"{mount['mountPath']}/cartpole_ab.yaml"
    assert volume["configMap"]["name"] == "ftg-sweeps"
    # `kubectl create configmap ftg-sweeps --from-file=sweeps/` makes one key per file, by its name.
    assert (ROOT / "sweeps" / Path(args.config).name).is_file()


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a/b.yaml", "x.yaml; rm -rf /", ".hidden.yaml", "x.json"]
)
def test_webhook_refuses_anything_but_a_plain_sweep_file_name(name: str) -> None:
    assert _trigger_value("webhook", {**WEBHOOK_EVENT, "body": {"config": name}}) is None


def test_upload_filters_match_the_minio_event_source() -> None:
    notification = _one(events(), "EventSource", "ftg-minio")["spec"]["minio"]["sweep-upload"]
    prefix, suffix = notification["filter"]["prefix"], notification["filter"]["suffix"]
    assert _trigger_value("upload", UPLOAD_EVENT) == f"s3://ftg/{prefix}tiny{suffix}"
    other = json.loads(json.dumps(UPLOAD_EVENT))
    other["notification"][0]["s3"]["object"]["key"] = "state/runs/x/config.json"
    assert _trigger_value("upload", other) is None
    # The bucket is the one MinIO's Job creates, and the store's own objects are outside the prefix.
    job = _one(build("dev"), "Job", "minio-create-buckets")
    buckets = next(
        v["value"] for v in job["spec"]["template"]["spec"]["containers"][0]["env"] if v["name"] == "BUCKETS"
    )
    assert notification["bucket"]["name"] in buckets.split()
    store = next(
        e["value"]
        for e in _sweep_template()["spec"]["templates"][0]["container"]["env"]
        if e["name"] == "FTG_STORE_URL"
    )
    assert not f"{store}/".startswith(f"s3://ftg/{prefix}")


def test_the_driver_reads_an_uploaded_sweep_file_from_s3(s3_endpoint: str, monkeypatch) -> None:
    from benchmarks.reliability import procs

    bucket = f"ftg-sweeps-{uuid.uuid4().hex[:12]}"
    s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    sweep = {"name": "uploaded", "seeds": [0], "defaults": {"env_id": "CartPole-v1"}, "configs": {"a": {}}}
    s3.put_object(Bucket=bucket, Key="sweep-files/tiny.yaml", Body=yaml.safe_dump(sweep).encode())
    monkeypatch.setenv("FTG_S3_ENDPOINT_URL", s3_endpoint)
    monkeypatch.setenv("FTG_S3_CREDENTIALS_FILE", "")
    procs.clear_settings_caches()
    try:
        event = json.loads(json.dumps(UPLOAD_EVENT))
        event["notification"][0]["s3"]["bucket"]["name"] = bucket
        args = _driver_args(str(_trigger_value("upload", event)))
        assert ppo_sweep._read_sweep(args.config, args).name == "uploaded"
        with pytest.raises(SweepError, match=f"--config: no such object s3://{bucket}/sweep-files/gone.yaml"):
            ppo_sweep._read_sweep(f"s3://{bucket}/sweep-files/gone.yaml", args)
        missing = f"ftg-absent-{uuid.uuid4().hex[:12]}"
        with pytest.raises(SweepError, match=f"--config: cannot read s3://{missing}/x.yaml"):
            ppo_sweep._read_sweep(f"s3://{missing}/x.yaml", args)
        # Reading a sweep file never creates a bucket.
        assert missing not in {b["Name"] for b in s3.list_buckets()["Buckets"]}
    finally:
        procs.clear_settings_caches()


# --------------------------------------------------------------------------- the driver's pod


def test_driver_runs_as_its_service_account_with_rights_where_the_workflows_live() -> None:
    objs = build("prod")
    template = _sweep_template()
    account = template["spec"]["serviceAccountName"]
    namespace = template["metadata"]["namespace"]
    assert _one(objs, "ServiceAccount", account)["metadata"]["namespace"] == namespace
    iteration_namespaces = {
        o["metadata"]["namespace"] for o in objs if o["kind"] == "WorkflowTemplate" and o is not template
    }
    env = {e["name"]: e.get("value") for e in template["spec"]["templates"][0]["container"]["env"]}
    assert iteration_namespaces == {env["FTG_ARGO_NAMESPACE"]}

    def granted(ns: str) -> dict[str, set[str]]:
        """resource -> verbs the driver's account holds in namespace ``ns``."""
        out: dict[str, set[str]] = {}
        for binding in (o for o in objs if o["kind"] == "RoleBinding" and o["metadata"]["namespace"] == ns):
            if {"kind": "ServiceAccount", "name": account, "namespace": namespace} not in binding["subjects"]:
                continue
            role = _one(objs, "Role", binding["roleRef"]["name"])
            assert role["metadata"]["namespace"] == ns
            for rule in role["rules"]:
                assert rule["apiGroups"] == ["argoproj.io"]
                for resource in rule["resources"]:
                    out.setdefault(resource, set()).update(rule["verbs"])
        return out

    verbs = {"create", "get", "list", "watch", "update", "patch", "delete"}
    workflows_ns = granted(env["FTG_ARGO_NAMESPACE"])
    assert workflows_ns == {"workflows": verbs, "workflowtemplates": verbs}
    # Its own pod's executor reports the step's result.
    assert granted(namespace) == {"workflowtaskresults": {"create", "patch"}}


def test_driver_reaches_the_stack_by_the_services_the_manifests_define() -> None:
    from urllib.parse import urlsplit

    services = _services(build("prod"))
    container = _sweep_template()["spec"]["templates"][0]["container"]
    env = {e["name"]: e for e in container["env"]}
    for name in ("FTG_S3_ENDPOINT_URL", "FTG_META_URL", "FTG_TRACKING_URI"):
        parts = urlsplit(env[name]["value"])
        assert parts.port in services.get(str(parts.hostname), set()), name
    assert "FTG_GATEWAY_URL" not in env and "FTG_WORKFLOW_GATEWAY_URL" not in env  # both: IN_CLUSTER_GATEWAY
    assert IN_CLUSTER_GATEWAY == "http://gateway.openfaas:8080"
    keys = {
        env[k]["valueFrom"]["secretKeyRef"]["name"] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    }
    assert keys == {"ftg-minio"}


def test_dev_skips_the_argo_certificate_check_and_prod_verifies() -> None:
    def verify(overlay: str) -> str | None:
        template = _one(build(overlay), "WorkflowTemplate", "ftg-sweep")
        env = {e["name"]: e.get("value") for e in template["spec"]["templates"][0]["container"]["env"]}
        return env.get("FTG_ARGO_VERIFY_SSL")

    assert verify("dev") == "false"
    assert verify("prod") is None  # the setting's default: verify


def test_driver_image_holds_what_the_template_runs() -> None:
    dockerfile = (ROOT / "workflows" / "Dockerfile.driver").read_text()
    allowed = {
        line[1:]
        for line in (ROOT / "workflows" / "Dockerfile.driver.dockerignore").read_text().splitlines()
        if line.startswith("!")
    }
    copied = [line.split()[1:-1] for line in dockerfile.splitlines() if line.startswith("COPY ")]
    sources = {source for sources in copied for source in sources}
    assert sources <= allowed and all((ROOT / s).exists() for s in sources)
    workdir = re.search(r"^WORKDIR (\S+)$", dockerfile, re.M)
    container = _sweep_template()["spec"]["templates"][0]["container"]
    assert workdir is not None and container["workingDir"] == workdir.group(1)
    assert (ROOT / container["command"][1]).is_file() and "workflows" in sources
    default = _sweep_template()["spec"]["arguments"]["parameters"][0]["value"]
    assert (ROOT / default).is_file() and "sweeps" in sources
    # runAsNonRoot can only be checked against a numeric user.
    assert re.findall(r"^USER (\d+)$", dockerfile, re.M) == [str(container["securityContext"]["runAsUser"])]


def test_make_images_builds_the_driver_image_the_template_runs() -> None:
    builds = recipe_commands("images", ["docker", "build", "-f", "workflows/Dockerfile.driver"])
    container = _sweep_template()["spec"]["templates"][0]["container"]
    assert [argv[argv.index("-t") + 1] for argv in builds] == [container["image"]]
    assert builds[0][-1] == "."  # the repository root, filtered by the driver's own ignore file


def test_prometheus_scrapes_the_driver_pod() -> None:
    config_map = _one(build("prod"), "ConfigMap", "ftg-prometheus")
    jobs = {j["job_name"]: j for j in yaml.safe_load(config_map["data"]["prometheus.yml"])["scrape_configs"]}
    job = jobs["ftg-driver"]
    [keep] = [r for r in job["relabel_configs"] if r.get("action") == "keep"]
    [address] = [r for r in job["relabel_configs"] if r.get("target_label") == "__address__"]
    template = _sweep_template()
    sweep = template["spec"]["templates"][0]
    label = keep["source_labels"][0].removeprefix("__meta_kubernetes_pod_label_")
    labels = {
        k.replace(".", "_").replace("/", "_").replace("-", "_"): v
        for k, v in sweep["metadata"]["labels"].items()
    }
    assert re.fullmatch(keep["regex"], labels[label])
    assert job["kubernetes_sd_configs"][0]["namespaces"]["names"] == [template["metadata"]["namespace"]]
    port = address["replacement"].rsplit(":", 1)[1]
    args = _driver_args("sweeps/cartpole_ab.yaml")
    assert str(args.metrics_port) == port
    assert {p["containerPort"] for p in sweep["container"]["ports"]} == {int(port)}
