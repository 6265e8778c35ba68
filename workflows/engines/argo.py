"""The cluster engine: each iteration, or each chain of K iterations, is a Workflow on an Argo server.

The Workflow is submitted through Hera's ``WorkflowsService`` and references the ``ftg-iteration``
WorkflowTemplate (or, K > 1, calls ``ftg-iteration-chain`` once per iteration, see
:mod:`workflows.iteration_chain`); the engine polls it to completion and maps Argo's node status onto the
same ``WorkflowRun`` the embedded engine returns, one per iteration, so the driver is engine-agnostic.
A Workflow the engine stops waiting for (its timeout, an interrupt, an error) is terminated through the
Argo API, so nothing keeps calling functions for a driver that has gone. Direct function calls go over
HTTP to the OpenFaaS gateway.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

from workflows.engines.base import NodeStatus, WorkflowRun, call_function
from workflows.engines.compiler import compile_workflow
from workflows.engines.invokers import HttpInvoker
from workflows.engines.retry import function_retries
from workflows.iteration import (
    PARAMETERS,
    iteration_manifest,
    iteration_workflow,
    template_name_for,
)
from workflows.iteration_chain import (
    MAX_CHAIN,
    call_iteration,
    chain_manifest,
    chain_template_name_for,
    chain_workflow,
)

log = logging.getLogger(__name__)

DONE_PHASES = {"Succeeded", "Failed", "Error"}
# Argo node types that are plumbing, not tasks: the DAG itself and the per-attempt children of a
# Retry node (their attempts are folded into the Retry node that stands for the task).
_SKIP_TYPES = {"DAG", "Steps", "StepGroup"}


class ArgoError(RuntimeError):
    """The Argo server did not do what was asked (no Workflow name, a Workflow that never finishes)."""


class _Follow:
    """A submitted Workflow being waited for; terminated on exit unless it reached a final phase."""

    def __init__(self, engine: ArgoEngine, name: str) -> None:
        self.engine = engine
        self.name = name
        self.done = False

    def __enter__(self) -> _Follow:
        return self

    def __exit__(self, *exc: object) -> None:
        if not self.done:
            self.engine.terminate(self.name)


def _epoch(ts: str | None) -> float | None:
    if not ts:
        return None
    return datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def _span(node: Mapping[str, Any]) -> float | None:
    start, end = _epoch(node.get("startedAt")), _epoch(node.get("finishedAt"))
    return None if start is None or end is None else max(0.0, end - start)


def nodes_from_status(status: Mapping[str, Any]) -> list[NodeStatus]:
    """Argo ``status.nodes`` (id -> node) as NodeStatus records, tasks in start order.

    A task with a retryStrategy is a ``Retry`` node whose children are its HTTP attempts; a
    ``withParam`` task is a ``TaskGroup`` whose children are the per-item tasks.
    """
    raw: dict[str, Mapping[str, Any]] = dict(status.get("nodes") or {})
    attempt_ids = {c for n in raw.values() if n.get("type") == "Retry" for c in n.get("children") or []}
    out: list[NodeStatus] = []
    for node_id, n in sorted(raw.items(), key=lambda kv: (kv[1].get("startedAt") or "", kv[0])):
        kind = n.get("type", "")
        if kind in _SKIP_TYPES or node_id in attempt_ids:
            continue
        display = n.get("displayName") or n.get("name", node_id)
        attempts = [raw[c] for c in n.get("children") or [] if c in raw] if kind == "Retry" else [n]
        result = (n.get("outputs") or {}).get("result")
        if result is None and attempts and kind == "Retry":
            result = (attempts[-1].get("outputs") or {}).get("result")
        task = display.split("(", 1)[0]
        is_call = kind in ("Retry", "HTTP")
        out.append(
            NodeStatus(
                name=display,
                task=task,
                template=n.get("templateName") or "",
                type="HTTP" if is_call else ("Skipped" if kind == "Skipped" else kind),
                phase=n.get("phase", "Pending"),
                result=result,
                attempts=len(attempts) if is_call else 0,
                started=_epoch(n.get("startedAt")),
                finished=_epoch(n.get("finishedAt")),
                duration_s=_span(n),
                call_s=sum(_span(a) or 0.0 for a in attempts) if is_call else 0.0,
                message=n.get("message", ""),
                children=[raw[c].get("displayName", c) for c in n.get("children") or [] if c in raw]
                if kind == "TaskGroup"
                else [],
            )
        )
    return out


def _run(
    name: str,
    phase: str,
    nodes: list[NodeStatus],
    message: str,
    params: Mapping[str, str],
    started: float | None,
    finished: float | None,
) -> WorkflowRun:
    start, end = started or 0.0, finished or 0.0
    return WorkflowRun(
        name=name,
        phase=phase,
        nodes=nodes,
        message=message,
        parameters=dict(params),
        started=start,
        finished=end,
        duration_s=max(0.0, end - start),
    )


def chain_runs(
    name: str, status: Mapping[str, Any], parameters: Sequence[Mapping[str, str]]
) -> list[WorkflowRun]:
    """The iterations of a chaining Workflow that reached a final phase, in order, one run each.

    Each ``iteration-<i>`` call is a DAG node whose steps carry its id as ``boundaryID``. A run starts
    where the previous one finished (the first where the Workflow started), so its ``duration_s`` is its
    share of the Workflow's wall time, orchestration included.

    Args:
        name: the Workflow's name.
        status: its ``status``.
        parameters: each chained iteration's parameters, in order.
    """
    raw: dict[str, Mapping[str, Any]] = dict(status.get("nodes") or {})
    by_iteration = {int(p["iteration"]): p for p in parameters}
    calls: dict[int, tuple[str, Mapping[str, Any]]] = {}
    for node_id, n in raw.items():
        i = call_iteration(str(n.get("displayName") or ""))
        if n.get("type") == "DAG" and i in by_iteration:
            calls[i] = (node_id, n)
    out: list[WorkflowRun] = []
    previous = _epoch(status.get("startedAt"))
    for i in sorted(by_iteration):
        if i not in calls or calls[i][1].get("phase") not in DONE_PHASES:
            break
        call_id, call = calls[i]
        inner = {k: n for k, n in raw.items() if n.get("boundaryID") == call_id}
        finished = _epoch(call.get("finishedAt"))
        message = call.get("message") or (status.get("message", "") if call["phase"] != "Succeeded" else "")
        out.append(
            _run(
                f"{name}/{call.get('displayName')}",
                call["phase"],
                nodes_from_status({"nodes": inner}),
                message,
                by_iteration[i],
                previous,
                finished,
            )
        )
        previous = finished
    return out


class ArgoEngine:
    """Submit-and-wait per iteration on an Argo server; the engine for ``FTG_ENGINE=argo``.

    Args:
        host: Argo server URL.
        token: bearer token, or None.
        namespace: where the template and the Workflows live.
        verify_ssl: verify the Argo server's certificate: True against the system's CAs, a path against
            that PEM bundle of CAs (``FTG_ARGO_CA_BUNDLE``), False not at all.
        template_name: the iteration WorkflowTemplate's name (default: the family's, see ``off_policy``).
        poll_seconds: how often a running Workflow is polled.
        timeout_seconds: how long :meth:`wait` waits for one Workflow.
        session: a ``requests`` session for the Argo API (tests).
        gateway: the OpenFaaS gateway as this process reaches it (its direct calls).
        workflow_gateway: the gateway as the Workflow's steps reach it inside the cluster, passed as
            their ``gateway`` parameter (see :mod:`workflows.placement`); None: the same as ``gateway``.
        off_policy: drive the off-policy (replay buffer) iteration template instead of the PPO one.
        iterations_per_workflow: iterations the driver runs in one Workflow (``run_iterations``).
        clock: monotonic seconds, for the timeout (tests pass a virtual clock).
        sleep: waits between polls (tests pass one that advances the virtual clock, or interrupts).
    """

    def __init__(
        self,
        host: str,
        token: str | None,
        namespace: str,
        verify_ssl: bool | str = True,
        template_name: str | None = None,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 3600.0,
        session: Any | None = None,
        *,
        gateway: str = str(PARAMETERS["gateway"]),
        workflow_gateway: str | None = None,
        off_policy: bool = False,
        iterations_per_workflow: int = 1,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from hera.workflows import WorkflowsService

        self.service = WorkflowsService(
            host=host,
            token=token,
            namespace=namespace,
            # Hera types it bool but hands it to requests as `verify`, which takes a CA bundle's path too.
            verify_ssl=verify_ssl,  # type: ignore[arg-type]
            session=session,
        )
        self.namespace = namespace
        self.off_policy = off_policy
        self.template_name = template_name or template_name_for(off_policy)
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        if not 1 <= iterations_per_workflow <= MAX_CHAIN:
            raise ValueError(
                f"iterations_per_workflow: {iterations_per_workflow} is not between 1 and {MAX_CHAIN}"
            )
        self.iterations_per_workflow = iterations_per_workflow
        self.chain_template_name = chain_template_name_for(off_policy)
        self._clock = clock
        self._sleep = sleep
        self._gateway = gateway.rstrip("/")
        self._workflow_gateway = (workflow_gateway or gateway).rstrip("/")
        self._http = HttpInvoker()
        # Direct calls are retried as the template's steps are.
        self._retries = function_retries(compile_workflow(iteration_manifest(off_policy=off_policy)))

    @property
    def gateway(self) -> str:
        """Base URL of the OpenFaaS gateway as the Workflow's steps call it (their ``gateway`` parameter)."""
        return self._workflow_gateway

    @property
    def driver_gateway(self) -> str:
        """Base URL of the OpenFaaS gateway as this process's direct calls reach it."""
        return self._gateway

    def ensure_template(self) -> None:
        """Create the iteration WorkflowTemplate, or replace it with the current one if it exists.

        With more than one iteration per Workflow, the chained template is installed beside it.
        """
        self._install(
            iteration_manifest(name=self.template_name, namespace=self.namespace, off_policy=self.off_policy)
        )
        if self.iterations_per_workflow > 1:
            self._install(
                chain_manifest(self.chain_template_name, namespace=self.namespace, off_policy=self.off_policy)
            )

    def _install(self, manifest: dict[str, Any]) -> None:
        from hera.exceptions import AlreadyExists
        from hera.workflows.models import (
            WorkflowTemplate,
            WorkflowTemplateCreateRequest,
            WorkflowTemplateUpdateRequest,
        )

        name = manifest["metadata"]["name"]
        try:
            self.service.create_workflow_template(
                WorkflowTemplateCreateRequest(template=WorkflowTemplate.model_validate(manifest)),
                self.namespace,
            )
        except AlreadyExists:
            current = self.service.get_workflow_template(name, self.namespace)
            manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
            self.service.update_workflow_template(
                name,
                WorkflowTemplateUpdateRequest(template=WorkflowTemplate.model_validate(manifest)),
                self.namespace,
            )

    def submit(self, parameters: Mapping[str, str]) -> str:
        """Create one iteration Workflow; returns the name the server generated.

        Raises:
            ArgoError: the server's answer names no Workflow.
        """
        return self._create(
            iteration_workflow(dict(parameters), template_name=self.template_name, namespace=self.namespace)
        )

    def submit_chain(self, parameters: Sequence[Mapping[str, str]]) -> str:
        """Create one Workflow running these consecutive iterations in order; returns its name."""
        return self._create(
            chain_workflow(parameters, template_name=self.chain_template_name, namespace=self.namespace)
        )

    def _create(self, manifest: dict[str, Any]) -> str:
        from hera.workflows.models import Workflow, WorkflowCreateRequest

        request = WorkflowCreateRequest(workflow=Workflow.model_validate(manifest))
        created = self.service.create_workflow(request, self.namespace)
        name = created.metadata.name
        if not name:
            prefix = manifest["metadata"]["generateName"]
            raise ArgoError(f"the Argo server created a Workflow from {prefix!r} but returned no name")
        return name

    def terminate(self, name: str) -> None:
        """Terminate Workflow ``name`` (``PUT .../{name}/terminate``): its running steps stop, none starts.

        Best effort: a failure is logged, not raised, so it never hides why the engine gave up.
        """
        from hera.workflows.models import WorkflowTerminateRequest

        try:
            self.service.terminate_workflow(
                name, WorkflowTerminateRequest(name=name, namespace=self.namespace), self.namespace
            )
        except Exception as exc:  # the server's own error types vary (gone, already finished, 5xx)
            log.warning("could not terminate workflow %s: %s: %s", name, type(exc).__name__, exc)
        else:
            log.info("terminated workflow %s", name)

    def _status(self, name: str) -> dict[str, Any]:
        wf = self.service.get_workflow(name, self.namespace).model_dump(
            by_alias=True, exclude_none=True, mode="json"
        )
        status: dict[str, Any] = wf.get("status") or {}
        return status

    def _polls(self, follow: _Follow, timeout: float) -> Iterator[dict[str, Any]]:
        """Workflow ``follow.name``'s status at every poll, the last one final (then ``follow.done``).

        Raises:
            ArgoError: still not done after ``timeout`` seconds (the Workflow is then terminated).
        """
        deadline = self._clock() + timeout
        while True:
            status = self._status(follow.name)
            if status.get("phase") in DONE_PHASES:
                follow.done = True
                yield status
                return
            yield status
            if self._clock() > deadline:
                raise ArgoError(f"workflow {follow.name} still {status.get('phase')} after {timeout:g}s")
            self._sleep(self.poll_seconds)

    def wait(self, name: str, parameters: Mapping[str, str]) -> WorkflowRun:
        """Poll Workflow ``name`` until it is done; terminate it if the wait ends any other way.

        Raises:
            ArgoError: still not done after ``timeout_seconds``.
        """
        with _Follow(self, name) as follow:
            for polled in self._polls(follow, self.timeout_seconds):
                status = polled
        return _run(
            name,
            status["phase"],
            nodes_from_status(status),
            status.get("message", ""),
            parameters,
            _epoch(status.get("startedAt")),
            _epoch(status.get("finishedAt")),
        )

    def run(self, parameters: Mapping[str, str]) -> WorkflowRun:
        """Submit one iteration Workflow and wait for it (see :meth:`Engine.run`)."""
        return self.wait(self.submit(parameters), parameters)

    def run_iterations(self, parameters: Sequence[Mapping[str, str]]) -> Generator[WorkflowRun, None, None]:
        """Run consecutive iterations in one Workflow; yield each one's run as soon as it is final.

        One iteration is :meth:`run`. Otherwise the chain's runs come in order; after a failed one nothing
        follows. A Workflow that ends before an iteration could run (terminated, past its deadline) yields
        that iteration as a run with the Workflow's phase and message and no nodes. Closing the iterator
        early (the driver stopping, an interrupt) terminates the Workflow.

        Raises:
            ArgoError: the Workflow succeeded without running every iteration, or it is still running
                after ``timeout_seconds`` per iteration (it is then terminated).
        """
        if len(parameters) == 1:
            yield self.run(parameters[0])
            return
        name = self.submit_chain(parameters)
        handed = 0
        with _Follow(self, name) as follow:
            for status in self._polls(follow, self.timeout_seconds * len(parameters)):
                runs = chain_runs(name, status, parameters)
                for wf in runs[handed:]:
                    handed += 1
                    yield wf
                    if not wf.succeeded:
                        return
        if handed == len(parameters):
            return
        if status["phase"] == "Succeeded":
            raise ArgoError(f"workflow {name} succeeded after {handed} of its {len(parameters)} iterations")
        started = _epoch(status.get("startedAt"))
        yield _run(
            f"{name}/-",
            status["phase"],
            [],
            status.get("message", ""),
            parameters[handed],
            started,
            _epoch(status.get("finishedAt")),
        )

    def call(
        self, function: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Call one function on the gateway over HTTP (see :meth:`Engine.call`).

        Retried as the iteration template's step calling the same function is (its ``retryStrategy``).
        """
        retry = self._retries.get(function)
        return call_function(self._http, self._gateway, function, body, headers, retry=retry)

    def close(self) -> None:
        """Close the HTTP connections to the gateway."""
        self._http.close()
