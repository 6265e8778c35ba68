"""K iterations in one Argo Workflow: the chained iteration template and the Workflow that chains it.

On a cluster every Workflow pays for an agent pod and every DAG level for a controller round trip
(docs/argo-latency.md), so a driver may run K iterations per Workflow (``--iterations-per-workflow``).
The same iteration DAG as :mod:`workflows.iteration`, with the iteration as the DAG's input instead of
a Workflow parameter, lives in a WorkflowTemplate of its own (``ftg-iteration-chain``, off-policy
``ftg-iteration-offpolicy-chain``; no entrypoint: a library of templates). The driver submits a Workflow
whose entrypoint DAG calls it once per iteration through ``templateRef``, each call depending on the one
before::

    iteration-8 -> iteration-9 -> iteration-10 -> iteration-11      (each: collect -> aggregate -> ...)

Each call is a DAG node of its own in Argo's status (its steps carry its id as ``boundaryID``), so the
driver reads the iterations one by one as they finish (:func:`workflows.engines.argo.chain_runs`), and a
Workflow that dies after j of its K iterations leaves j committed iterations to resume after.
The one-iteration template and its golden file stay as they are.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from hera.workflows import DAG, Parameter, Task, Workflow, WorkflowTemplate
from hera.workflows.models import TemplateRef

from workflows.iteration import (
    ENTRYPOINT,
    GOLDEN_PATH,
    ITERATION_INPUT,
    PARAMETERS,
    SERVICE_ACCOUNT,
    TTL_STRATEGY,
    WORKFLOW_DEADLINE_S,
    _check_params,
    as_manifest,
    iteration_dag,
    template_name_for,
)

CHAIN_SUFFIX = "-chain"
CHAIN_ENTRYPOINT = "chain"
# The chaining DAG's task calling the iteration DAG for iteration i is ``iteration-<i>``.
CALL_PREFIX = "iteration-"
CHAIN_GOLDEN_PATH = GOLDEN_PATH.with_name("iteration-chain-template.yaml")
OFF_POLICY_CHAIN_GOLDEN_PATH = GOLDEN_PATH.with_name("offpolicy-iteration-chain-template.yaml")
# The Workflow-wide parameters of a chain: every iteration parameter but the iteration itself.
CHAIN_PARAMETERS = {k: v for k, v in PARAMETERS.items() if k != ITERATION_INPUT}
# A chain of this many iterations or more is refused: each call is a DAG node with its steps in the
# Workflow object, which etcd caps at 1 MB (about 30 nodes of a few hundred bytes per iteration).
MAX_CHAIN = 64


def chain_template_name_for(off_policy: bool) -> str:
    """The chained iteration WorkflowTemplate of the on-policy (PPO) or off-policy (DQN) family."""
    return template_name_for(off_policy) + CHAIN_SUFFIX


def build_chain_template(
    name: str | None = None, namespace: str | None = None, *, off_policy: bool = False
) -> WorkflowTemplate:
    """The chained iteration WorkflowTemplate: the iteration DAG with ``iteration`` as its input.

    Its ``arguments`` declare the Workflow parameters the steps read; a Workflow calling it through
    ``templateRef`` must pass them itself (Argo merges a template's arguments only for
    ``workflowTemplateRef``). No entrypoint, so Argo validates it as a library of templates.

    Args:
        name: ``metadata.name``; the family's chain template name when None.
        namespace: ``metadata.namespace``; omitted when None.
        off_policy: the replay-buffer iteration (DQN) instead of the on-policy one (PPO).
    """
    arguments = [
        Parameter(name=p) if default is None else Parameter(name=p, value=default)
        for p, default in CHAIN_PARAMETERS.items()
    ]
    with WorkflowTemplate(
        name=name or chain_template_name_for(off_policy), namespace=namespace, arguments=arguments
    ) as wt:
        iteration_dag(off_policy=off_policy, chained=True)
    return wt


def chain_manifest(
    name: str | None = None, namespace: str | None = None, *, off_policy: bool = False
) -> dict[str, Any]:
    """The chained iteration WorkflowTemplate as a dict (what Argo stores)."""
    return as_manifest(build_chain_template(name, namespace, off_policy=off_policy))


def render_chain_yaml(
    name: str | None = None, namespace: str | None = None, *, off_policy: bool = False
) -> str:
    """The chained iteration WorkflowTemplate as YAML (its golden files)."""
    return build_chain_template(name, namespace, off_policy=off_policy).to_yaml()


def _shared(params: Sequence[Mapping[str, str]]) -> dict[str, str]:
    """The Workflow parameters of a chain: the first iteration's, checked equal across the chain.

    The trace context is the first iteration's: one span parents every step of the Workflow.
    """
    if not params:
        raise ValueError("a chain needs at least one iteration")
    if len(params) > MAX_CHAIN:
        raise ValueError(f"a chain of {len(params)} iterations is over the limit of {MAX_CHAIN}")
    first = dict(params[0])
    for p in params:
        _check_params(dict(p))
    start = int(first[ITERATION_INPUT])
    for k, p in enumerate(params):
        if p[ITERATION_INPUT] != str(start + k):
            raise ValueError(
                f"chained iterations must be consecutive: {[q[ITERATION_INPUT] for q in params]}"
            )
        differ = sorted(
            key for key in CHAIN_PARAMETERS if key != "traceparent" and p.get(key) != first.get(key)
        )
        if differ:
            raise ValueError(f"iteration {p[ITERATION_INPUT]} differs from the first in: {', '.join(differ)}")
    return {k: v for k, v in first.items() if k != ITERATION_INPUT}


def chain_workflow(
    params: Sequence[Mapping[str, str]], template_name: str | None = None, namespace: str | None = None
) -> dict[str, Any]:
    """The Workflow that runs consecutive iterations in order, one ``templateRef`` call each.

    Args:
        params: each iteration's parameters (:meth:`workflows.driver.RunDriver.parameters`), in order.
        template_name: the chained WorkflowTemplate (default: the on-policy family's).
        namespace: ``metadata.namespace``; omitted when None.

    Raises:
        ValueError: no iteration, too many, not consecutive, or parameters that differ between them
            (other than the iteration and its trace context).
    """
    shared = _shared(params)
    run_id = shared["run-id"]
    iterations = [int(p[ITERATION_INPUT]) for p in params]
    first, last = iterations[0], iterations[-1]
    ref = TemplateRef(name=template_name or chain_template_name_for(False), template=ENTRYPOINT)
    with (
        Workflow(
            generate_name=f"ftg-{run_id}-{first}-{last}-",
            namespace=namespace,
            labels={
                "faastraingym.io/run-id": run_id,
                "faastraingym.io/iteration": str(first),
                "faastraingym.io/last-iteration": str(last),
            },
            entrypoint=CHAIN_ENTRYPOINT,
            arguments=[Parameter(name=k, value=v) for k, v in shared.items()],
            # A templateRef call brings only the template: the Workflow sets its own identity and bounds.
            service_account_name=SERVICE_ACCOUNT,
            active_deadline_seconds=WORKFLOW_DEADLINE_S * len(iterations),
            ttl_strategy=TTL_STRATEGY,
        ) as wf,
        DAG(name=CHAIN_ENTRYPOINT),
    ):
        previous: str | None = None
        for i in iterations:
            call = f"{CALL_PREFIX}{i}"
            Task(name=call, template_ref=ref, arguments={ITERATION_INPUT: str(i)}, depends=previous)
            previous = call
    return as_manifest(wf)


def call_iteration(call: str) -> int | None:
    """The iteration a chain's call (``iteration-<i>``) runs; None for any other name."""
    tail = call.removeprefix(CALL_PREFIX)
    return int(tail) if call.startswith(CALL_PREFIX) and tail.isdigit() else None


def write_chain_goldens() -> list[str]:
    """Rewrite both chained templates' golden files; returns their paths."""
    written = []
    for path, off_policy in ((CHAIN_GOLDEN_PATH, False), (OFF_POLICY_CHAIN_GOLDEN_PATH, True)):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(render_chain_yaml(off_policy=off_policy))
        written.append(str(path))
    return written
