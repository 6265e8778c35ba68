"""What the driver needs from an engine, and what every engine hands back.

Two engines run the iteration DAG: the embedded one (:mod:`workflows.engines.local`) and Argo
(:mod:`workflows.engines.argo`). Both satisfy :class:`Engine` and return a :class:`WorkflowRun`, so the
driver never asks which one it has.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from pydantic import BaseModel

from ftg_common import catalog

if TYPE_CHECKING:
    from workflows.engines.compiler import RetrySpec
    from workflows.engines.invokers import Invoker

__all__ = [
    "ERROR",
    "FAILED",
    "OMITTED",
    "RUNNING",
    "SKIPPED",
    "SUCCEEDED",
    "Engine",
    "FanInError",
    "FunctionCallError",
    "NodeStatus",
    "WorkflowRun",
    "call_function",
    "compact_json",
    "fan_in",
]

SUCCEEDED, FAILED, ERROR = "Succeeded", "Failed", "Error"
SKIPPED, OMITTED, RUNNING = "Skipped", "Omitted", "Running"
FAILED_OR_ERROR = (FAILED, ERROR)

M = TypeVar("M", bound=BaseModel)


class FunctionCallError(RuntimeError):
    """A direct function call got no 200 answer.

    Attributes:
        function: the function called.
        status: the HTTP status, or None when no response came (timeout, connection refused).
        body: the response body (truncated to 500 characters), or the transport error.
    """

    def __init__(self, function: str, status: int | None, body: str) -> None:
        self.function = function
        self.status = status
        self.body = body[:500]
        what = "gave no response" if status is None else f"answered {status}"
        super().__init__(f"{function} {what}: {self.body}")


class FanInError(ValueError):
    """A fanned-out task's results cannot be joined into one JSON array."""


@dataclass(slots=True)
class NodeStatus:
    """One node of a finished run, as Argo's ``status.nodes`` describes it.

    Attributes:
        name: task name, or ``task(i:item)`` for a fan-out child, as Argo displays it.
        task: the DAG task the node belongs to.
        template: the template it ran.
        type: ``HTTP``, ``TaskGroup`` or ``Skipped``.
        phase: Argo node phase.
        result: response body (``outputs.result``).
        status_code: HTTP status of the last attempt (embedded engine only).
        attempts: calls made, retries included.
        started: epoch seconds.
        finished: epoch seconds.
        duration_s: node wall time, retries and backoff included (as Argo shows it).
        call_s: time spent waiting on calls only, summed over attempts (what a function bills).
        message: why the node ended as it did.
        children: names of a TaskGroup's children, in loop order.
    """

    name: str
    task: str
    template: str
    type: str
    phase: str = RUNNING
    result: str | None = None
    status_code: int | None = None
    attempts: int = 0
    started: float | None = None
    finished: float | None = None
    duration_s: float | None = None
    call_s: float = 0.0
    message: str = ""
    children: list[str] = field(default_factory=list)

    @property
    def fulfilled(self) -> bool:
        """True once the node has reached a final phase."""
        return self.phase != RUNNING


def compact_json(text: str) -> str:
    """A child's result as it appears in its group's fan-in: JSON without insignificant whitespace.

    Raises:
        ValueError: ``text`` is not JSON.
    """
    return json.dumps(json.loads(text), separators=(",", ":"), ensure_ascii=False)


def fan_in(group: NodeStatus, nodes: Mapping[str, NodeStatus], hole: tuple[str, str] | None = None) -> str:
    """``{{tasks.<group>.outputs.result}}`` of a fanned-out task.

    That is the succeeded children's results as one JSON array, in loop order.

    Args:
        group: the task group's node.
        nodes: every node by name.
        hole: (child name, text): that child, still running, is shown as ``text`` (a placeholder for
            its compacted result), as if it had succeeded.

    Raises:
        FanInError: a succeeded child returned something that is not JSON.
    """
    parts: list[str] = []
    for child_name in group.children:
        if hole is not None and child_name == hole[0]:
            parts.append(hole[1])
            continue
        child = nodes[child_name]
        if child.phase != SUCCEEDED or child.result is None:
            continue
        try:
            parts.append(compact_json(child.result))
        except ValueError:
            raise FanInError(
                f"cannot aggregate results of {group.task!r}: {child_name!r} returned invalid JSON "
                f"{child.result[:80]!r}"
            ) from None
    return "[" + ",".join(parts) + "]"


@dataclass
class WorkflowRun:
    """A finished Workflow: its phase and its nodes.

    Attributes:
        name: Workflow name.
        phase: ``Succeeded``, ``Failed`` or ``Error``.
        nodes: creation order: tasks as they start, each group followed by its children.
        message: the first failure, empty on success.
        parameters: the workflow parameters it ran with.
        started: epoch seconds.
        finished: epoch seconds.
        duration_s: wall time.
    """

    name: str
    phase: str
    nodes: list[NodeStatus]
    message: str
    parameters: dict[str, str]
    started: float
    finished: float
    duration_s: float
    _index: dict[str, NodeStatus] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self._index = {n.name: n for n in self.nodes}

    @property
    def succeeded(self) -> bool:
        """True when the Workflow succeeded."""
        return self.phase == SUCCEEDED

    def node(self, name: str) -> NodeStatus:
        """The node called ``name`` (a task name, or ``task(i:item)`` for a fan-out child).

        Raises:
            KeyError: no such node.
        """
        try:
            return self._index[name]
        except KeyError:
            raise KeyError(f"no node {name!r} (nodes: {', '.join(self._index)})") from None

    def outputs(self, task: str) -> str | None:
        """``{{tasks.<task>.outputs.result}}`` as a downstream task sees it (the fan-in array for loops)."""
        node = self.node(task)
        if node.type == "TaskGroup":
            return fan_in(node, self._index)
        return node.result

    def output_json(self, task: str) -> Any:
        """The task's result parsed as JSON.

        Raises:
            ValueError: the task has no result.
        """
        text = self.outputs(task)
        if text is None:
            raise ValueError(f"task {task!r} has no result (phase {self.node(task).phase})")
        return json.loads(text)

    def result(self, task: str, model: type[M]) -> M:
        """The task's result validated as the function's response model.

        Raises:
            ValueError: the task has no result.
            pydantic.ValidationError: the result does not match ``model``.
        """
        text = self.outputs(task)
        if text is None:
            raise ValueError(f"task {task!r} has no result (phase {self.node(task).phase})")
        return model.model_validate_json(text)

    def result_if_succeeded(self, task: str, model: type[M]) -> M | None:
        """Like :meth:`result`, or None when the task did not succeed (e.g. skipped by its ``when``)."""
        node = self._index.get(task)
        if node is None or node.phase != SUCCEEDED:
            return None
        return self.result(task, model)

    def failed_nodes(self) -> list[NodeStatus]:
        """Nodes that ended Failed or Error."""
        return [n for n in self.nodes if n.phase in FAILED_OR_ERROR]

    def http_nodes(self) -> list[NodeStatus]:
        """Nodes that called a function (at least one attempt): what invocation counts and costs are made of.

        TaskGroup nodes only span their children, and skipped/omitted nodes never ran.
        """
        return [n for n in self.nodes if n.type == "HTTP" and n.attempts]


class Engine(Protocol):
    """Runs the iteration Workflow and calls single functions, on one gateway."""

    @property
    def gateway(self) -> str:
        """Base URL of the function gateway (the Workflow's ``gateway`` parameter)."""
        ...

    def run(self, parameters: Mapping[str, str]) -> WorkflowRun:
        """Run the iteration Workflow once with these parameters and wait for it to finish."""
        ...

    def call(
        self, function: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Call one function directly and return its JSON body.

        Raises:
            ftg_common.catalog.UnknownFunctionError: ``function`` is not in the catalog.
            FunctionCallError: no 200 answer within the function's timeout.
        """
        ...

    def close(self) -> None:
        """Release the engine's workers and connections."""
        ...


def call_function(
    invoker: Invoker,
    gateway: str,
    function: str,
    body: Mapping[str, Any],
    headers: Mapping[str, str] | None = None,
    *,
    retry: RetrySpec | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, Any]:
    """POST ``body`` to ``{gateway}/function/<function>`` through ``invoker``.

    What both engines' :meth:`Engine.call` do. Each attempt's wait is bounded by the function's catalog
    timeout. With ``retry``, a failed attempt is retried as a DAG step with that strategy would be
    (:func:`workflows.engines.retry.decide`): a 4xx answer is final under the iteration template's
    expression, a 5xx, a transport error or a timeout is tried again after the backoff.

    Args:
        invoker: how the call reaches the function.
        gateway: base URL of the functions.
        function: a catalog function name.
        body: the JSON request.
        headers: extra request headers.
        retry: the retry strategy; None tries once.
        sleep: waits out a backoff (tests pass a recorder).

    Raises:
        ftg_common.catalog.UnknownFunctionError: ``function`` is not in the catalog.
        FunctionCallError: the last attempt got a non-200 answer, a transport error or a timeout.
    """
    from workflows.engines.retry import decide, non_2xx_message

    timeout = float(catalog.function(function).timeout_s)
    url = f"{gateway}/function/{function}"
    sent = {"Content-Type": "application/json", **(headers or {})}
    payload = json.dumps(dict(body)).encode()
    first = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        started = time.monotonic()
        error: FunctionCallError | None = None
        try:
            future = invoker.submit(url, "POST", sent, payload, timeout)
            resp = future.result(timeout)
        except cf.TimeoutError:
            future.cancel()  # the invoker may drop the call (an async call's pending callback slot)
            error = FunctionCallError(function, None, f"no response within {timeout:g}s")
            message = f"timeout: {error.body}"
        except Exception as exc:  # transport errors: the invoker's own exception types vary
            error = FunctionCallError(function, None, f"{type(exc).__name__}: {exc}")
            error.__cause__ = exc
            message = error.body
        else:
            if resp.status == 200:
                answer = json.loads(resp.body)
                if not isinstance(answer, dict):
                    raise FunctionCallError(
                        function, resp.status, f"expected a JSON object, got {resp.body[:200]}"
                    )
                return answer
            error = FunctionCallError(function, resp.status, resp.body)
            ok_2xx = 200 <= resp.status < 300
            message = f"expected status 200, got {resp.status}" if ok_2xx else non_2xx_message(resp.status)
        now = time.monotonic()
        verdict = decide(retry, attempt, FAILED, message, now - started, now - first)
        if isinstance(verdict, str):
            raise error
        sleep(verdict)
