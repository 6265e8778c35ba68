"""One training iteration as an Argo DAG of HTTP steps, built with Hera.

    collect ×K (withParam over the shard list) -> aggregate (fan-in) -> update -> evaluate (when due)

Two WorkflowTemplates, one per algorithm family, through the same four functions:

- ``ftg-iteration`` (on-policy, PPO): aggregate builds the GAE training batch, update trains on it
  (``batch``);
- ``ftg-iteration-offpolicy`` (DQN): collect acts epsilon-greedy and logs behaviour probabilities,
  aggregate appends the shards to the replay buffer, update takes its gradient steps on minibatches
  sampled from the buffer (``replay``: the append it samples after), evaluate adds off-policy estimates.

Every step POSTs a small JSON body (keys, not payloads) to ``{gateway}/function/<name>``, bounded by
``timeoutSeconds`` and retried (see ``RETRY_LIMIT``, ``RETRY_BACKOFF``, ``RETRY_EXPRESSION``). The same
compiled dict is submitted to Argo (as a WorkflowTemplate plus one Workflow per iteration, see
:func:`iteration_workflow`) and executed by the embedded engine with ``gateway=local://gateway``.

``python -m workflows.iteration`` prints the YAML; ``--write-golden`` refreshes the golden test file
(never done by the tests themselves, so a change to the template is always a reviewed diff).
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from hera.workflows import DAG, HTTP, Parameter, RetryStrategy, Task, Workflow, WorkflowTemplate
from hera.workflows.models import Backoff, IntOrString, TTLStrategy, WorkflowTemplateRef
from hera.workflows.models import V1alpha1HTTPHeader as HTTPHeader

from ftg_common import catalog

TEMPLATE_NAME = "ftg-iteration"
OFF_POLICY_TEMPLATE_NAME = "ftg-iteration-offpolicy"
ENTRYPOINT = "iteration"
GOLDEN_PATH = Path(__file__).resolve().parent.parent / "tests" / "golden" / "iteration-template.yaml"
OFF_POLICY_GOLDEN_PATH = GOLDEN_PATH.with_name("offpolicy-iteration-template.yaml")

# Workflow parameters (all strings, as Argo passes them). Defaults only where a manual `argo submit`
# can sensibly omit the value; the driver always passes every one.
PARAMETERS: dict[str, str | None] = {
    "run-id": None,
    "iteration": None,
    "iterations": None,
    "eval-every": None,
    "gateway": "http://gateway.openfaas:8080",
    "shards": None,
    "config-digest": None,
    "traceparent": "",
}

# DAG task names (each task runs the template of the same name, which calls the catalog's function) live
# in the catalog, so the driver can name them without importing Hera.
from ftg_common.catalog import AGGREGATE, COLLECT, EVALUATE, UPDATE  # noqa: E402

# The request field each step adds to the common body, filled from the input parameter of the same name.
_BODY_FIELD: dict[str, str | None] = {COLLECT: "shard", AGGREGATE: "shards", UPDATE: "batch", EVALUATE: None}
# Off-policy: the update names the replay append it samples after, not a training batch.
_OFF_POLICY_BODY_FIELD: dict[str, str | None] = {**_BODY_FIELD, UPDATE: "replay"}

# The Workflow's identity on the cluster: HTTP steps run in the Argo agent pod as this service account,
# whose Role (manifests/argo/rbac.yaml) reads and patches WorkflowTaskSets; without it Argo uses `default`.
SERVICE_ACCOUNT = "ftg-workflow"
# Workflow-level deadline: the only one that bounds HTTP steps (a template-level activeDeadlineSeconds
# reaches pods only). A step stops retrying after RETRY_MAX_DURATION_S and its last attempt may still
# run its timeout, so four levels take at most 4 x 600 s + 120 + 120 + 300 + 300 s = 3,240 s; a
# Workflow still running after an hour is hung, and Argo fails it.
RETRY_MAX_DURATION_S = 600
WORKFLOW_DEADLINE_S = 3600
# Finished Workflows are deleted by the controller: successes once the driver has read them (it polls
# every second or so), failures after a day, to be looked at in the Argo UI.
TTL_STRATEGY = TTLStrategy(seconds_after_success=600, seconds_after_failure=86_400)

# Where a step reads its iteration: the Workflow's parameter (one iteration per Workflow), or, in the
# chained template (workflows/iteration_chain.py), an input the iteration DAG passes down to each step.
WORKFLOW_ITERATION = "{{workflow.parameters.iteration}}"
INPUT_ITERATION = "{{inputs.parameters.iteration}}"
ITERATION_INPUT = "iteration"


def eval_when(iteration: str = WORKFLOW_ITERATION) -> str:
    """Evaluate after the iteration that completes every eval-every'th one, and always after the last."""
    return (
        f"({iteration} + 1) % {{{{workflow.parameters.eval-every}}}} == 0"
        f" || {iteration} + 1 == {{{{workflow.parameters.iterations}}}}"
    )


EVAL_WHEN = eval_when()


def _body(field: str | None, iteration: str = WORKFLOW_ITERATION) -> str:
    # Built by hand, not json.dumps: the numeric fields are bare placeholders that only become JSON
    # after substitution (iteration and shard are numbers; shards and batch are JSON documents).
    fields = [
        '"run_id": "{{workflow.parameters.run-id}}"',
        f'"iteration": {iteration}',
        '"config_digest": "{{workflow.parameters.config-digest}}"',
    ]
    if field is not None:
        fields.append(f'"{field}": {{{{inputs.parameters.{field}}}}}')
    return "{" + ", ".join(fields) + "}"


# --- retries ----------------------------------------------------------------------------------------
# Budget. Sized so that a 20% per-call failure rate (independent per attempt; a fault before the function
# ran or after it, both safe to retry because every step is idempotent) completes a 391-iteration run
# without a manual resume. A step fails only if all n attempts fail: p**n with p = 0.2. A run makes
# about N = 1,900 step executions (391 x (2 collect + aggregate + update + ~0.2 evaluate) = 1,642, plus
# margin for wider fan-outs and the driver's direct calls), so P(run fails) = 1 - (1 - p**n)**N:
#   n = 3 (the old limit "2"): 0.008 per step, 15 failed steps expected: a resume every ~26 iterations
#   n = 5: 0.46    n = 7: 0.024    n = 9: 9.7e-4    n = 10: 2.0e-4    n = 11: 3.9e-5
# 11 attempts (limit "10") is the first count below 1e-4. On average a step then makes 1.25 attempts.
RETRY_LIMIT = 10
# Backoff: 50 ms doubling, 0.05, 0.1, 0.2, ... 25.6 s; at most 51.15 s of waiting in all (the geometric
# sum 0.05 * (2**10 - 1)), well under the shortest step timeout (120 s), with no `cap` (an Argo v3.7+
# field that older controllers ignore). Short first waits suit the common blip (a reset connection, a
# 502 from a restarting replica); the long tail rides out a replica restart or a cold start.
RETRY_BACKOFF = Backoff(
    duration="50ms", factor=IntOrString("2"), max_duration=f"{RETRY_MAX_DURATION_S // 60}m"
)
# maxDuration stops retrying a step that has been failing for 10 minutes (counted from the first attempt's
# start): a function that is down, not flaky. Without it 11 attempts of a hung 300 s step take 55 min.
# At the 20% fault rate all 11 attempts fit as long as one takes under ~50 s.
#
# Which answers are retried. A 4xx cannot succeed on a retry (bad input, unknown run, a conflicting
# version), except 408 and 429 (the of-watchdog answers 429 when its in-flight limit is reached); a 5xx,
# a timeout or a transport error can. What Argo exposes to retryStrategy.expression for an HTTP node
# (checked in the argo-workflows source, v3.5.0 to v4.1.2):
#   - buildRetryStrategyLocalScope (workflow/controller/operator.go) binds lastRetry.status (the attempt's
#     phase), lastRetry.message (the attempt node's message), lastRetry.exitCode ("-1": an HTTP node has
#     no exit code), lastRetry.duration and retries, all strings. No response body, no status code.
#   - the agent (workflow/executor/agent.go, executeHTTPTemplate; reconcileTaskSet copies its message onto
#     the node) fails every unsuccessful attempt with phase Failed, and its message is
#       "received non-2xx response code: <code>"     with no successCondition (the default 2xx check),
#       "successCondition '<condition>' evaluated false"  with one: no code, so 4xx and 5xx look alike,
#       the Go error text (`Post "<url>": ... connection refused`, `context deadline exceeded`) otherwise.
# So the templates leave successCondition unset: the default check (2xx, and the functions answer 200)
# is the only one whose message carries the status code. The expression retries everything except a
# message naming a 4xx other than 408/429. It is also true for an empty message: Argo v3.5 evaluates it
# before looking at the last attempt's phase, i.e. also while it runs or once it succeeded.
RETRY_EXPRESSION = (
    "!(lastRetry.message matches '^received non-2xx response code: 4[0-9][0-9]$')"
    " || lastRetry.message matches 'code: 4(08|29)$'"
)


def _http_step(name: str, function: str, timeout: int, field: str | None, *, chained: bool = False) -> HTTP:
    # No successCondition: see RETRY_EXPRESSION for why the default 2xx check is the one to use.
    inputs = [Parameter(name=ITERATION_INPUT)] if chained else []
    if field is not None:
        inputs.append(Parameter(name=field))
    return HTTP(
        name=name,
        url=f"{{{{workflow.parameters.gateway}}}}/function/{function}",
        method="POST",
        headers=[
            HTTPHeader(name="Content-Type", value="application/json"),
            HTTPHeader(name="traceparent", value="{{workflow.parameters.traceparent}}"),
        ],
        body=_body(field, INPUT_ITERATION if chained else WORKFLOW_ITERATION),
        timeout_seconds=timeout,
        inputs=inputs or None,
        # limit is a string: the Argo JSON schema types int-or-string fields as strings
        retry_strategy=RetryStrategy(
            limit=str(RETRY_LIMIT),
            retry_policy="Always",
            backoff=RETRY_BACKOFF,
            expression=RETRY_EXPRESSION,
        ),
    )


def _result_of(task: str) -> str:
    return f"{{{{tasks.{task}.outputs.result}}}}"


def template_name_for(off_policy: bool) -> str:
    """The WorkflowTemplate a run's iterations use: on-policy (PPO) or off-policy (DQN)."""
    return OFF_POLICY_TEMPLATE_NAME if off_policy else TEMPLATE_NAME


def build_iteration_template(
    name: str | None = None, namespace: str | None = None, *, off_policy: bool = False
) -> WorkflowTemplate:
    """The iteration WorkflowTemplate as a Hera object.

    Args:
        name: ``metadata.name``; the family's template name when None.
        namespace: ``metadata.namespace``; omitted when None.
        off_policy: the replay-buffer iteration (DQN) instead of the on-policy one (PPO).
    """
    name = name or template_name_for(off_policy)
    arguments = [
        Parameter(name=p) if default is None else Parameter(name=p, value=default)
        for p, default in PARAMETERS.items()
    ]
    with WorkflowTemplate(
        name=name,
        namespace=namespace,
        entrypoint=ENTRYPOINT,
        arguments=arguments,
        service_account_name=SERVICE_ACCOUNT,
        active_deadline_seconds=WORKFLOW_DEADLINE_S,
        ttl_strategy=TTL_STRATEGY,
    ) as wt:
        iteration_dag(off_policy=off_policy)
    return wt


def iteration_dag(*, off_policy: bool, chained: bool = False) -> DAG:
    """The iteration's DAG and its four HTTP steps, added to the WorkflowTemplate being built.

    Args:
        off_policy: the replay-buffer (DQN) bodies instead of the on-policy ones.
        chained: the iteration is the DAG's input ``iteration``, passed on to every step, instead of the
            Workflow's parameter, so one Workflow can run the DAG once per iteration.
    """
    fields = _OFF_POLICY_BODY_FIELD if off_policy else _BODY_FIELD
    update_input = fields[UPDATE]
    assert update_input is not None
    steps = {
        f.step: _http_step(f.step, f.name, f.timeout_s, fields[f.step], chained=chained)
        for f in catalog.FUNCTIONS
    }
    # Argument order: the step's own field, then the iteration (chained only).
    passed = {ITERATION_INPUT: INPUT_ITERATION} if chained else {}
    with DAG(name=ENTRYPOINT, inputs=[Parameter(name=ITERATION_INPUT)] if chained else None) as dag:
        Task(
            name=COLLECT,
            template=steps[COLLECT],
            with_param="{{workflow.parameters.shards}}",
            arguments={"shard": "{{item}}", **passed},
        )
        Task(
            name=AGGREGATE,
            template=steps[AGGREGATE],
            depends=COLLECT,
            arguments={"shards": _result_of(COLLECT), **passed},
        )
        Task(
            name=UPDATE,
            template=steps[UPDATE],
            depends=AGGREGATE,
            arguments={update_input: _result_of(AGGREGATE), **passed},
        )
        Task(
            name=EVALUATE,
            template=steps[EVALUATE],
            depends=UPDATE,
            when=eval_when(INPUT_ITERATION if chained else WORKFLOW_ITERATION),
            arguments=passed or None,
        )
    return dag


def iteration_manifest(
    name: str | None = None, namespace: str | None = None, *, off_policy: bool = False
) -> dict[str, Any]:
    """The iteration WorkflowTemplate as a dict (what Argo stores and the embedded engine compiles)."""
    return as_manifest(build_iteration_template(name, namespace, off_policy=off_policy))


def as_manifest(workflow: Workflow) -> dict[str, Any]:
    """A Hera Workflow or WorkflowTemplate as the dict Argo stores."""
    manifest: dict[str, Any] = workflow.to_dict()
    return manifest


def off_policy_manifest(name: str | None = None, namespace: str | None = None) -> dict[str, Any]:
    """The off-policy (replay buffer) iteration WorkflowTemplate as a dict."""
    return iteration_manifest(name, namespace, off_policy=True)


def render_yaml(name: str | None = None, namespace: str | None = None, *, off_policy: bool = False) -> str:
    """The iteration WorkflowTemplate as YAML (the golden files and ``manifests/argo``)."""
    return build_iteration_template(name, namespace, off_policy=off_policy).to_yaml()


def _check_params(params: dict[str, str]) -> None:
    unknown = sorted(set(params) - set(PARAMETERS))
    if unknown:
        raise ValueError(f"unknown iteration parameter(s): {', '.join(unknown)}")
    missing = sorted(p for p, default in PARAMETERS.items() if default is None and p not in params)
    if missing:
        raise ValueError(f"missing iteration parameter(s): {', '.join(missing)}")
    bad = sorted(k for k, v in params.items() if not isinstance(v, str))
    if bad:
        raise ValueError(f"iteration parameters must be strings: {', '.join(bad)}")


def iteration_workflow(
    params: dict[str, str], template_name: str = TEMPLATE_NAME, namespace: str | None = None
) -> dict[str, Any]:
    """The Workflow the cluster driver submits for one iteration: a reference to the template plus arguments.

    One Workflow per iteration keeps each object small and clear of Argo's recursion cap. The name is
    generated (``ftg-<run-id>-<iteration>-xxxxx``) so a retried iteration is a new Workflow; labels let
    the driver find an iteration's Workflows.
    """
    _check_params(params)
    run_id, iteration = params["run-id"], params["iteration"]
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]{0,62}", run_id) or not iteration.isdigit():
        raise ValueError(f"bad run-id {run_id!r} or iteration {iteration!r}")
    wf = Workflow(
        generate_name=f"ftg-{run_id}-{iteration}-",
        namespace=namespace,
        labels={"faastraingym.io/run-id": run_id, "faastraingym.io/iteration": iteration},
        workflow_template_ref=WorkflowTemplateRef(name=template_name),
        arguments=[Parameter(name=k, value=v) for k, v in params.items()],
    )
    return as_manifest(wf)


def main(argv: list[str] | None = None) -> int:
    """``python -m workflows.iteration``: print a template, or refresh both golden files."""
    parser = argparse.ArgumentParser(description="Render the iteration WorkflowTemplate as YAML.")
    parser.add_argument(
        "--write-golden",
        action="store_true",
        help="rewrite the golden files under tests/golden (one-iteration and chained templates)",
    )
    parser.add_argument("--off-policy", action="store_true", help="print the off-policy (DQN) template")
    args = parser.parse_args(argv)
    if args.write_golden:
        from workflows.iteration_chain import write_chain_goldens

        for path, off_policy in ((GOLDEN_PATH, False), (OFF_POLICY_GOLDEN_PATH, True)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(render_yaml(off_policy=off_policy))
            print(f"wrote {path}", file=sys.stderr)
        for written in write_chain_goldens():
            print(f"wrote {written}", file=sys.stderr)
    else:
        sys.stdout.write(render_yaml(off_policy=args.off_policy))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
