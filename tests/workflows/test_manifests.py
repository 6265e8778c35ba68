"""Cluster artefacts stay consistent with the code: the Argo templates, the Function CRs, stack.yml."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from tests.make_recipes import recipe_commands
from workflows.iteration import render_yaml, template_name_for
from workflows.iteration_chain import chain_template_name_for, render_chain_yaml

ROOT = Path(__file__).resolve().parents[2]


# Each WorkflowTemplate under manifests/argo and the `ppo_sweep.py render` flags that print it.
ARGO_TEMPLATES = {
    "iteration-template.yaml": (),
    "offpolicy-iteration-template.yaml": ("--off-policy",),
    "iteration-chain-template.yaml": ("--chain",),
    "offpolicy-iteration-chain-template.yaml": ("--off-policy", "--chain"),
}


def _rendered(*flags: str) -> str:
    off_policy = "--off-policy" in flags
    return (
        render_chain_yaml(off_policy=off_policy) if "--chain" in flags else render_yaml(off_policy=off_policy)
    )


@pytest.mark.parametrize(("file", "flags"), ARGO_TEMPLATES.items())
def test_argo_manifests_are_the_rendered_templates(file: str, flags: tuple[str, ...]) -> None:
    """What kustomize applies is what the driver installs (create-or-update) for that family."""
    argo = ROOT / "manifests" / "argo"
    assert (argo / file).read_text() == _rendered(*flags), (
        f"run `python workflows/ppo_sweep.py render {' '.join(flags)} -o manifests/argo/{file}`"
    )
    resources = yaml.safe_load((argo / "kustomization.yaml").read_text())["resources"]
    assert file in resources


def test_make_golden_rewrites_every_argo_manifest_with_its_flags() -> None:
    """After a change to the DAG, `make golden` refreshes what the tests above compare against."""
    written = {}
    for argv in recipe_commands("golden", ["workflows/ppo_sweep.py", "render"]):
        out_at = argv.index("-o")
        flags = tuple(argv[argv.index("render") + 1 : out_at])
        written[argv[out_at + 1]] = flags
    assert written == {f"manifests/argo/{file}": flags for file, flags in ARGO_TEMPLATES.items()}


def test_every_argo_template_file_is_kept_equal_to_the_code() -> None:
    """A template file added under manifests/argo without a renderer would drift unchecked."""
    argo = ROOT / "manifests" / "argo"
    templates = {
        f.name
        for f in argo.glob("*.yaml")
        for doc in yaml.safe_load_all(f.read_text())
        if doc and doc.get("kind") == "WorkflowTemplate"
    }
    assert templates == set(ARGO_TEMPLATES)
    names = {yaml.safe_load(_rendered(*flags))["metadata"]["name"] for flags in ARGO_TEMPLATES.values()}
    assert names == {template_name_for(o) for o in (False, True)} | {
        chain_template_name_for(o) for o in (False, True)
    }


@pytest.mark.parametrize(("file", "flags"), ARGO_TEMPLATES.items())
def test_render_command_prints_the_manifest(
    file: str, flags: tuple[str, ...], ftg_env: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from workflows import ppo_sweep

    out = ftg_env / file
    assert ppo_sweep.main(["render", *flags, "-o", str(out)]) == 0
    assert out.read_text() == (ROOT / "manifests" / "argo" / file).read_text()
    assert ppo_sweep.main(["render", *flags]) == 0
    assert capsys.readouterr().out == out.read_text()


def test_function_crs_match_stack_file() -> None:
    stack = yaml.safe_load((ROOT / "functions" / "stack.yml").read_text())["functions"]
    crs = list(yaml.safe_load_all((ROOT / "manifests" / "openfaas" / "functions.yaml").read_text()))
    assert (
        {cr["metadata"]["name"] for cr in crs}
        == set(stack)
        == {"rollout-collector", "reward-aggregator", "policy-updater", "policy-evaluator"}
    )
    for cr in crs:
        assert cr["apiVersion"] == "openfaas.com/v1" and cr["kind"] == "Function"
        spec, fn = cr["spec"], stack[cr["metadata"]["name"]]
        assert spec["name"] == cr["metadata"]["name"] and spec["image"] == fn["image"]
        # The CRD types labels/environment as maps of strings and limits as {cpu, memory} strings.
        for field in ("labels", "environment", "limits", "requests"):
            assert all(isinstance(v, str) for v in spec[field].values()), field
            assert spec[field] == {k: str(v) for k, v in fn[field].items()}
        assert set(spec["limits"]) <= {"cpu", "memory"}


def _seconds(value: object) -> int:
    return int(str(value).removesuffix("s"))


def test_stack_timeouts_are_consistent() -> None:
    """Each function's watchdog timeouts fit inside the gateway's, which the gateway values ship."""
    stack = yaml.safe_load((ROOT / "functions" / "stack.yml").read_text())
    gateway = yaml.safe_load((ROOT / "manifests" / "openfaas" / "gateway-values.yaml").read_text())
    upstream = _seconds(gateway["gateway"]["upstreamTimeout"])
    # The gateway must still be reading/writing when the upstream answer arrives, and so must the provider.
    for section, key in [("gateway", "readTimeout"), ("gateway", "writeTimeout")] + [
        ("faasnetes", "readTimeout"),
        ("faasnetes", "writeTimeout"),
        ("queueWorker", "ackWait"),
    ]:
        assert _seconds(gateway[section][key]) > upstream, (section, key)
    assert stack["provider"]["name"] == "openfaas"
    for name, fn in stack["functions"].items():
        env = fn["environment"]
        assert fn["lang"] == "dockerfile" and (ROOT / fn["handler"] / "Dockerfile").exists()
        # upstream_timeout is a gateway setting, not an of-watchdog one: in a function it configures nothing.
        assert "upstream_timeout" not in env, name
        secs = {k: _seconds(env[k]) for k in ("exec_timeout", "read_timeout", "write_timeout")}
        assert secs["exec_timeout"] <= secs["read_timeout"] and secs["exec_timeout"] <= secs["write_timeout"]
        assert secs["exec_timeout"] < upstream, name
        assert fn["labels"]["com.openfaas.scale.min"] == "0"


def test_stack_file_agrees_with_the_function_catalog() -> None:
    """What faas-cli deploys is what the DAG calls, what the cost meter bills and what the gateway routes."""
    from ftg_common import catalog

    stack = yaml.safe_load((ROOT / "functions" / "stack.yml").read_text())["functions"]
    assert set(stack) == set(catalog.FUNCTION_NAMES)
    for spec in catalog.FUNCTIONS:
        fn = stack[spec.name]
        assert str(fn["limits"]["memory"]) == spec.memory, spec.name
        assert str(fn["limits"]["cpu"]) == spec.cpu, spec.name
        assert fn["environment"]["exec_timeout"] == f"{spec.timeout_s}s", spec.name
        assert fn["labels"]["com.openfaas.scale.max"] == str(spec.max_replicas), spec.name
        assert fn["build_args"] == {"FUNCTION": spec.folder}, spec.name
        assert (ROOT / "functions" / spec.folder / "handler.py").exists(), spec.name
