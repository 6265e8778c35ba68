"""The cluster engine: each iteration is a Workflow on an Argo Workflows server.

The Workflow is submitted through Hera's ``WorkflowsService`` and references the ``ftg-iteration``
WorkflowTemplate; the engine polls it to completion and maps Argo's node status onto the same
``WorkflowRun`` the embedded engine returns, so the driver is engine-agnostic. Direct function calls go
over HTTP to the OpenFaaS gateway.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
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

DONE_PHASES = {"Succeeded", "Failed", "Error"}
# Argo node types that are plumbing, not tasks: the DAG itself and the per-attempt children of a
# Retry node (their attempts are folded into the Retry node that stands for the task).
_SKIP_TYPES = {"DAG", "Steps", "StepGroup"}


class ArgoError(RuntimeError):
    """The Argo server did not do what was asked (no Workflow name, a Workflow that never finishes)."""


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


class ArgoEngine:
    """Submit-and-wait per iteration on an Argo server; the engine for ``FTG_ENGINE=argo``.

    Args:
        host: Argo server URL.
        token: bearer token, or None.
        namespace: where the template and the Workflows live.
        verify_ssl: verify the Argo server's certificate.
        template_name: the iteration WorkflowTemplate's name (default: the family's, see ``off_policy``).
        poll_seconds: how often a running Workflow is polled.
        timeout_seconds: how long :meth:`wait` waits for one Workflow.
        session: a ``requests`` session for the Argo API (tests).
        gateway: the OpenFaaS gateway as both the cluster's steps and this process reach it.
        off_policy: drive the off-policy (replay buffer) iteration template instead of the PPO one.
    """

    def __init__(
        self,
        host: str,
        token: str | None,
        namespace: str,
        verify_ssl: bool = True,
        template_name: str | None = None,
        poll_seconds: float = 1.0,
        timeout_seconds: float = 3600.0,
        session: Any | None = None,
        *,
        gateway: str = str(PARAMETERS["gateway"]),
        off_policy: bool = False,
    ) -> None:
        from hera.workflows import WorkflowsService

        self.service = WorkflowsService(
            host=host, token=token, namespace=namespace, verify_ssl=verify_ssl, session=session
        )
        self.namespace = namespace
        self.off_policy = off_policy
        self.template_name = template_name or template_name_for(off_policy)
        self.poll_seconds = poll_seconds
        self.timeout_seconds = timeout_seconds
        self._gateway = gateway.rstrip("/")
        self._http = HttpInvoker()
        # Direct calls are retried as the template's steps are.
        self._retries = function_retries(compile_workflow(iteration_manifest(off_policy=off_policy)))

    @property
    def gateway(self) -> str:
        """Base URL of the OpenFaaS gateway."""
        return self._gateway

    def ensure_template(self) -> None:
        """Create the iteration WorkflowTemplate, or replace it with the current one if it exists."""
        from hera.exceptions import AlreadyExists
        from hera.workflows.models import (
            WorkflowTemplate,
            WorkflowTemplateCreateRequest,
            WorkflowTemplateUpdateRequest,
        )

        manifest = iteration_manifest(
            name=self.template_name, namespace=self.namespace, off_policy=self.off_policy
        )
        try:
            self.service.create_workflow_template(
                WorkflowTemplateCreateRequest(template=WorkflowTemplate.model_validate(manifest)),
                self.namespace,
            )
        except AlreadyExists:
            current = self.service.get_workflow_template(self.template_name, self.namespace)
            manifest["metadata"]["resourceVersion"] = current.metadata.resource_version
            self.service.update_workflow_template(
                self.template_name,
                WorkflowTemplateUpdateRequest(template=WorkflowTemplate.model_validate(manifest)),
                self.namespace,
            )

    def submit(self, parameters: Mapping[str, str]) -> str:
        """Create one iteration Workflow; returns the name the server generated.

        Raises:
            ArgoError: the server's answer names no Workflow.
        """
        from hera.workflows.models import Workflow, WorkflowCreateRequest

        manifest = iteration_workflow(
            dict(parameters), template_name=self.template_name, namespace=self.namespace
        )
        request = WorkflowCreateRequest(workflow=Workflow.model_validate(manifest))
        created = self.service.create_workflow(request, self.namespace)
        name = created.metadata.name
        if not name:
            prefix = manifest["metadata"]["generateName"]
            raise ArgoError(f"the Argo server created a Workflow from {prefix!r} but returned no name")
        return name

    def wait(self, name: str, parameters: Mapping[str, str]) -> WorkflowRun:
        """Poll Workflow ``name`` until it is done.

        Raises:
            ArgoError: still not done after ``timeout_seconds``.
        """
        deadline = time.monotonic() + self.timeout_seconds
        while True:
            wf = self.service.get_workflow(name, self.namespace).model_dump(
                by_alias=True, exclude_none=True, mode="json"
            )
            status = wf.get("status") or {}
            if status.get("phase") in DONE_PHASES:
                break
            if time.monotonic() > deadline:
                raise ArgoError(f"workflow {name} still {status.get('phase')} after {self.timeout_seconds}s")
            time.sleep(self.poll_seconds)
        started, finished = _epoch(status.get("startedAt")) or 0.0, _epoch(status.get("finishedAt")) or 0.0
        return WorkflowRun(
            name=name,
            phase=status["phase"],
            nodes=nodes_from_status(status),
            message=status.get("message", ""),
            parameters=dict(parameters),
            started=started,
            finished=finished,
            duration_s=max(0.0, finished - started),
        )

    def run(self, parameters: Mapping[str, str]) -> WorkflowRun:
        """Submit one iteration Workflow and wait for it (see :meth:`Engine.run`)."""
        return self.wait(self.submit(parameters), parameters)

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
