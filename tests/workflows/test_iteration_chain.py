"""K iterations per Workflow: the chained template (golden, schema), the chaining Workflow, and the
embedded engine running the same chain inlined."""

from __future__ import annotations

import copy

import pytest
import yaml

from tests.workflows.test_iteration import SAMPLE_PARAMS, assert_golden, assert_schema_valid
from tests.workflows.test_local_engine import ITERATION_MODULES, iteration_params
from workflows.engines.chain import expand_chain, split_node_name
from workflows.engines.compiler import (
    InvalidWorkflowError,
    UnsupportedWorkflowError,
    compile_workflow,
)
from workflows.engines.invokers import InProcessInvoker
from workflows.engines.local import LocalEngine
from workflows.iteration import WORKFLOW_DEADLINE_S, iteration_manifest
from workflows.iteration_chain import (
    CHAIN_GOLDEN_PATH,
    MAX_CHAIN,
    OFF_POLICY_CHAIN_GOLDEN_PATH,
    call_iteration,
    chain_manifest,
    chain_template_name_for,
    chain_workflow,
    render_chain_yaml,
)


def _params(*iterations: int, **changes: str) -> list[dict[str, str]]:
    return [{**SAMPLE_PARAMS, "iteration": str(i), **changes} for i in iterations]


# --- the chained template ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "off_policy"), [(CHAIN_GOLDEN_PATH, False), (OFF_POLICY_CHAIN_GOLDEN_PATH, True)]
)
def test_chained_templates_match_their_golden_files(path, off_policy: bool) -> None:
    assert_golden(render_chain_yaml(off_policy=off_policy), path, "the chained template")
    assert yaml.safe_load(path.read_text()) == chain_manifest(off_policy=off_policy)


@pytest.mark.parametrize("off_policy", [False, True])
def test_chained_template_is_schema_valid_and_its_own_template(off_policy: bool) -> None:
    manifest = chain_manifest(off_policy=off_policy)
    assert_schema_valid("WorkflowTemplate", manifest, every_key_declared=True)
    assert manifest["metadata"]["name"] == chain_template_name_for(off_policy)
    assert "entrypoint" not in manifest["spec"]  # a library: Argo validates it without one
    declared = [p["name"] for p in manifest["spec"]["arguments"]["parameters"]]
    assert "iteration" not in declared and "run-id" in declared


def _without_iteration_input(tmpl: dict) -> dict:
    """A chained template with the ``iteration`` input (declared or passed) taken out."""
    out = copy.deepcopy(tmpl)
    params = out.pop("inputs")["parameters"]
    assert params[0] == {"name": "iteration"}
    if params[1:]:
        out["inputs"] = {"parameters": params[1:]}
    for task in out.get("dag", {}).get("tasks", []):
        args = task.pop("arguments")["parameters"]
        assert {"name": "iteration", "value": "{{inputs.parameters.iteration}}"} in args
        rest = [a for a in args if a["name"] != "iteration"]
        if rest:
            task["arguments"] = {"parameters": rest}
    return out


def test_chained_template_is_the_one_iteration_dag_with_the_iteration_as_input() -> None:
    """All the chain changes is where the iteration comes from; bodies, retries, timeouts,
    dependencies and the evaluation schedule are the one-iteration template's."""
    one = {t["name"]: t for t in iteration_manifest()["spec"]["templates"]}
    chained = {t["name"]: t for t in chain_manifest()["spec"]["templates"]}
    assert set(one) == set(chained)
    for name, tmpl in one.items():
        text = yaml.safe_dump(tmpl).replace(
            "{{workflow.parameters.iteration}}", "{{inputs.parameters.iteration}}"
        )
        assert _without_iteration_input(chained[name]) == yaml.safe_load(text), name


# --- the chaining Workflow ---------------------------------------------------------------------------


def test_chain_workflow_calls_the_template_once_per_iteration_in_order() -> None:
    wf = chain_workflow(_params(4, 5, 6), namespace="ftg")
    assert_schema_valid("Workflow", wf, every_key_declared=True)
    spec = wf["spec"]
    assert wf["metadata"]["generateName"] == "ftg-cartpole-s0-4-6-"
    assert wf["metadata"]["labels"]["faastraingym.io/iteration"] == "4"
    assert wf["metadata"]["labels"]["faastraingym.io/last-iteration"] == "6"
    assert spec["serviceAccountName"] == "ftg-workflow"
    assert spec["activeDeadlineSeconds"] == 3 * WORKFLOW_DEADLINE_S
    assert "ttlStrategy" in spec
    params = {p["name"]: p["value"] for p in spec["arguments"]["parameters"]}
    assert params == {k: v for k, v in SAMPLE_PARAMS.items() if k != "iteration"}
    (dag,) = spec["templates"]
    tasks = dag["dag"]["tasks"]
    assert [t["name"] for t in tasks] == ["iteration-4", "iteration-5", "iteration-6"]
    assert [t.get("depends") for t in tasks] == [None, "iteration-4", "iteration-5"]
    assert all(t["templateRef"] == {"name": "ftg-iteration-chain", "template": "iteration"} for t in tasks)
    assert [t["arguments"]["parameters"] for t in tasks] == [
        [{"name": "iteration", "value": str(i)}] for i in (4, 5, 6)
    ]
    assert [call_iteration(t["name"]) for t in tasks] == [4, 5, 6]
    assert call_iteration("collect") is None and call_iteration("iteration-x") is None


def test_chain_workflow_refuses_what_cannot_be_one_workflow() -> None:
    with pytest.raises(ValueError, match="consecutive"):
        chain_workflow(_params(4, 6))
    with pytest.raises(ValueError, match="differs from the first in: config-digest"):
        chain_workflow(_params(4) + _params(5, **{"config-digest": "ffff"}))
    with pytest.raises(ValueError, match="at least one"):
        chain_workflow([])
    with pytest.raises(ValueError, match=f"limit of {MAX_CHAIN}"):
        chain_workflow(_params(*range(MAX_CHAIN + 1)))
    # each iteration's trace context may differ: the first one parents the Workflow
    wf = chain_workflow(_params(4) + _params(5, traceparent="00-" + "1" * 32 + "-" + "2" * 16 + "-01"))
    params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    assert params["traceparent"] == SAMPLE_PARAMS["traceparent"]


# --- the same chain on the embedded engine -----------------------------------------------------------


def _inlined(iterations: list[int], total: int) -> dict:
    params = [iteration_params([0, 1], iteration=i, iterations=total, every=2) for i in iterations]
    return expand_chain(chain_workflow(params), {chain_template_name_for(False): chain_manifest()})


def test_the_embedded_engine_runs_the_chain_inlined() -> None:
    compiled = compile_workflow(_inlined([1, 2, 3], total=4))
    run = LocalEngine(InProcessInvoker(ITERATION_MODULES), compiled).run({})
    assert run.phase == "Succeeded", run.message
    for i in (1, 2, 3):
        agg = run.output_json(f"iteration-{i}--aggregate")["echo"]
        assert agg["iteration"] == i and [s["iteration"] for s in agg["shards"]] == [i, i]
        update = run.output_json(f"iteration-{i}--update")["echo"]
        assert update["iteration"] == i and update["batch"]["echo"] == agg
    # eval-every 2 of 4 iterations: after iteration 1 and after the last one (3), not after 2
    evals = {i: run.node(f"iteration-{i}--evaluate").phase for i in (1, 2, 3)}
    assert evals == {1: "Succeeded", 2: "Skipped", 3: "Succeeded"}
    assert run.output_json("iteration-3--evaluate")["echo"]["iteration"] == 3
    # every iteration starts after the one before it is done
    assert run.node("iteration-2--collect(0:0)").started >= run.node("iteration-1--evaluate").finished
    assert run.node("iteration-3--collect(0:0)").started >= run.node("iteration-2--update").finished
    assert split_node_name("iteration-2--collect(1:1)") == ("iteration-2", "collect(1:1)")
    assert split_node_name("collect(1:1)") == (None, "collect(1:1)")


def test_inlining_rewires_dependencies_and_results() -> None:
    tasks = {t["name"]: t for t in _inlined([7, 8], total=10)["spec"]["templates"][-1]["dag"]["tasks"]}
    assert tasks["iteration-7--collect"].get("depends") is None
    assert tasks["iteration-8--collect"]["depends"] == "iteration-7--evaluate"
    assert tasks["iteration-8--update"]["depends"] == "iteration-8--aggregate"
    args = {a["name"]: a["value"] for a in tasks["iteration-8--update"]["arguments"]["parameters"]}
    assert args == {"batch": "{{tasks.iteration-8--aggregate.outputs.result}}", "iteration": "8"}
    assert tasks["iteration-8--evaluate"]["when"].startswith("(8 + 1) % {{workflow.parameters.eval-every}}")


def test_inlining_refuses_what_it_cannot_run() -> None:
    wf = chain_workflow([iteration_params([0], iteration=i) for i in (0, 1)])
    with pytest.raises(InvalidWorkflowError, match="'ftg-iteration-chain' not given"):
        expand_chain(wf, {})
    templates = {chain_template_name_for(False): chain_manifest()}
    bad = copy.deepcopy(wf)
    bad["spec"]["templates"][0]["dag"]["tasks"][1]["arguments"]["parameters"][0]["value"] = "{{item}}"
    with pytest.raises(UnsupportedWorkflowError, match="literal values only"):
        expand_chain(bad, templates)
    bad = copy.deepcopy(wf)
    bad["spec"]["templates"][0]["dag"]["tasks"][1]["depends"] = "iteration-0 || iteration-0"
    with pytest.raises(UnsupportedWorkflowError, match="joined by '&&'"):
        expand_chain(bad, templates)
    bad = copy.deepcopy(wf)
    del bad["spec"]["templates"][0]["dag"]["tasks"][0]["arguments"]
    with pytest.raises(InvalidWorkflowError, match="iteration not passed"):
        expand_chain(bad, templates)


# --- the command-line flag ---------------------------------------------------------------------------


def test_iterations_per_workflow_flag_reaches_the_settings_or_is_refused_by_name(ftg_env, capsys) -> None:
    from ftg_common.settings import Settings
    from workflows import ppo_sweep

    argo = Settings(engine="argo")
    chained = ppo_sweep._chained(argo, 16)
    assert (chained.argo_iterations_per_workflow, chained.local_iterations_per_workflow) == (16, 1)
    assert ppo_sweep._chained(argo, None) is argo
    with pytest.raises(ValueError, match="--iterations-per-workflow: 0 is not between 1 and 64"):
        ppo_sweep._chained(argo, 0)
    # on the embedded engine the iterations are streamed instead
    streamed = ppo_sweep._chained(Settings(), 8)
    assert (streamed.argo_iterations_per_workflow, streamed.local_iterations_per_workflow) == (1, 8)
    code = ppo_sweep.main(
        ["submit", "--only", "zoo", "--seeds", "0", "--no-tracking", "--iterations-per-workflow", "65"]
    )
    assert code == 2
    assert "--iterations-per-workflow: 65 is not between 1 and 64" in capsys.readouterr().err


def test_the_off_policy_chain_compiles_inlined() -> None:
    name = chain_template_name_for(True)
    wf = chain_workflow([iteration_params([0], iteration=i) for i in (0, 1)], template_name=name)
    compiled = compile_workflow(expand_chain(wf, {name: chain_manifest(off_policy=True)}))
    update = compiled.task("iteration-1--update")
    assert [a for a, _ in update.args] == ["replay", "iteration"]
    assert update.deps == (("iteration-1--aggregate", frozenset({"Succeeded", "Skipped"})),)


# --- `ppo_sweep.py render --chain` -------------------------------------------------------------------


@pytest.mark.parametrize("off_policy", [False, True])
def test_render_workflow_chain_prints_a_valid_chaining_workflow(
    off_policy: bool, ftg_env: object, capsys: pytest.CaptureFixture[str]
) -> None:
    """``render --workflow RUN_ID --chain``: iterations 0..K-1 calling the chained template that
    manifests/argo ships, one call after another."""
    from workflows import ppo_sweep

    family = ["--off-policy"] if off_policy else []
    argv = ["render", "--workflow", "r-7", "--chain", "--iterations-per-workflow", "3", *family]
    assert ppo_sweep.main(argv) == 0
    wf = yaml.safe_load(capsys.readouterr().out)
    assert_schema_valid("Workflow", wf, every_key_declared=True)
    params = {p["name"]: p["value"] for p in wf["spec"]["arguments"]["parameters"]}
    assert params["run-id"] == "r-7" and params["iterations"] == "3" and "iteration" not in params
    tasks = wf["spec"]["templates"][0]["dag"]["tasks"]
    assert [call_iteration(t["name"]) for t in tasks] == [0, 1, 2]
    assert [t.get("depends") for t in tasks] == [None, "iteration-0", "iteration-1"]
    assert {t["templateRef"]["name"] for t in tasks} == {chain_template_name_for(off_policy)}
    assert wf["spec"]["activeDeadlineSeconds"] == 3 * WORKFLOW_DEADLINE_S
    # without K: two iterations
    assert ppo_sweep.main(["render", "--workflow", "r-7", "--chain", *family]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["metadata"]["generateName"] == "ftg-r-7-0-1-"


def test_render_chain_flags_are_refused_by_name(ftg_env: object, capsys: pytest.CaptureFixture[str]) -> None:
    from workflows import ppo_sweep

    cases = {
        ("--chain", "--iterations-per-workflow", "4"): "--iterations-per-workflow: only with --workflow",
        ("--workflow", "r1", "--iterations-per-workflow", "4"): "--iterations-per-workflow: only with",
        ("--workflow", "r1", "--chain", "--iterations-per-workflow", "0"): "0 is not between 1 and 64",
        ("--workflow", "r1", "--chain", "--iterations-per-workflow", "65"): "65 is not between 1 and 64",
        ("--workflow", "../r1", "--chain"): "--workflow",
    }
    for flags, message in cases.items():
        assert ppo_sweep.main(["render", *flags]) == 2, flags
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err, flags
