"""The embedded engine: runs a compiled Argo DAG of HTTP steps without Kubernetes.

It follows Argo Workflows v4.1.2 for the subset defined in :mod:`workflows.engines.compiler`:

- ``depends``: a task waits until every dependency is fulfilled, then runs if each term holds; plain ``X``
  means ``X.Succeeded || X.Skipped || X.Daemoned`` (``dependencies: [X]`` likewise). A task whose condition
  fails is **Omitted** and never runs; its own dependents are then omitted too.
- ``when`` is evaluated after substitution with govaluate rules (bare words are strings); false -> the node
  is **Skipped**, which satisfies a plain ``depends`` downstream.
- ``withParam``/``withItems`` expand into children named ``task(i:item)``; an empty list skips the task
  ("Skipped, empty params"). The task (TaskGroup) fails if any child failed or errored, once all children
  are done. ``{{tasks.T.outputs.result}}`` of a fanned-out T is a JSON array of the *succeeded* children's
  results (each parsed as JSON) in loop order, so with a failed child the array is short, but a plain
  ``depends`` on T does not run anyway because T Failed.
- HTTP steps: the response body is ``outputs.result``; success is ``successCondition`` (over
  ``response.statusCode``/``response.body``) or a 2xx status; a transport error or a timeout fails the
  attempt (phase Failed, as Argo's agent does).
- ``retryStrategy``: ``limit`` retries after the first attempt; Always retries Failed and Error,
  OnFailure (the default) Failed, OnError Error; the wait before retry n is
  ``duration * factor**(n-1)`` capped by ``cap``; ``maxDuration`` (counted from the first attempt's start)
  stops retrying; ``expression`` (expr-lang, over the ``lastRetry.*`` variables Argo binds for an HTTP node)
  false stops retrying. See :mod:`workflows.engines.retry`.
- failFast (default true): after a task fails no new task starts; running ones finish. The DAG's phase is
  the first failed/errored branch among the leaf tasks (sorted by name), an omitted task inheriting the
  phase of the failed dependency that caused it.

Substitution is one pass over pre-split strings; a name with no value (e.g. the result of a skipped task)
makes that node **Error**. Calls are submitted through an invoker (see :mod:`workflows.engines.invokers`);
ready tasks and all fan-out children are submitted at once and awaited together. ``timeoutSeconds`` bounds
each attempt's wait; the abandoned call may still finish in its worker. The driver's direct calls
(:meth:`LocalEngine.call`) go through the same invoker, so they reach the same workers or gateway.
"""

from __future__ import annotations

import concurrent.futures as cf
import heapq
import itertools
import json
import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from ftg_common import tracing
from ftg_common.faas import Response
from workflows.engines import follow_on
from workflows.engines.base import (
    ERROR,
    FAILED,
    FAILED_OR_ERROR,
    OMITTED,
    RUNNING,
    SKIPPED,
    SUCCEEDED,
    FanInError,
    NodeStatus,
    WorkflowRun,
    call_function,
    fan_in,
)
from workflows.engines.compiler import (
    CompiledWorkflow,
    HttpTemplate,
    InvalidWorkflowError,
    Task,
    UnsupportedWorkflowError,
    WorkflowSpecError,
    compile_workflow,
)
from workflows.engines.expr import ExpressionError, compile_expression, slotted_expression
from workflows.engines.invokers import Invoker
from workflows.engines.retry import decide, function_retries, non_2xx_message

log = logging.getLogger(__name__)

__all__ = [
    "LOCAL_GATEWAY",
    "CompiledWorkflow",
    "InvalidWorkflowError",
    "LocalEngine",
    "NodeStatus",
    "UnsupportedWorkflowError",
    "WorkflowParameterError",
    "WorkflowRun",
    "WorkflowSpecError",
    "compile_workflow",
    "resolve_parameters",
]

LOCAL_GATEWAY = "local://gateway"


class WorkflowParameterError(ValueError):
    """The run's parameters do not match the workflow's declared parameters."""


class _NodeError(ValueError):
    """Turns the node being prepared into an Error node with this message."""


def _item_text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if type(item) is int:  # the common case (shard numbers), without a trip through the JSON encoder
        return str(item)
    if isinstance(item, dict):
        return json.dumps(item, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False)


def _item_scope(item: Any) -> dict[str, str]:
    scope = {"item": _item_text(item)}
    if isinstance(item, dict):
        for key, value in item.items():
            scope[f"item.{key}"] = _item_text(value)
    return scope


def _child_name(task: str, index: int, item: Any) -> str:
    if isinstance(item, dict):
        desc = ",".join(sorted(f"{k}:{_item_text(v)}" for k, v in item.items()))
    else:
        desc = _item_text(item)
    return f"{task}({index}:{desc.replace('(', '').replace(')', '')})"


def _unresolved(key: KeyError, what: str) -> _NodeError:
    return _NodeError(f"unresolved placeholder '{{{{{key.args[0]}}}}}' in {what}")


class _Call:
    """One HTTP node and its attempts."""

    __slots__ = (
        "node",
        "template",
        "request",
        "attempt",
        "open",
        "future",
        "first_start",
        "t0",
        "group",
        "span",
    )

    def __init__(
        self,
        node: NodeStatus,
        template: HttpTemplate,
        request: tuple[str, str, dict[str, str], bytes],
        group: _TaskState | None,
    ) -> None:
        self.node = node
        self.template = template
        self.request = request
        self.attempt = 0
        self.open = False
        self.future: cf.Future[Response] | None = None
        self.first_start = 0.0
        self.t0 = 0.0
        self.group = group
        self.span: Any = None  # the attempt's trace span, while tracing is on


class _TaskState:
    __slots__ = ("task", "node", "pending")

    def __init__(self, task: Task) -> None:
        self.task = task
        self.node: NodeStatus | None = None
        self.pending = 0  # unfinished children of a TaskGroup

    @property
    def phase(self) -> str | None:
        return None if self.node is None else self.node.phase


class _Execution:
    """The state of one run, mutated under one lock by whichever thread has news.

    A response is handled on the thread that completes its future (the worker pool's reader, an HTTP
    thread): that thread records the attempt, starts what became ready and submits it, so a DAG level
    follows the one before with no hand-off to another thread (on a loaded 2-core machine, waking the
    thread that called ``run`` costs about as much as the pool round trip itself). The thread that
    called ``run`` starts the first tasks, fires retry and timeout timers and returns the verdict; it
    sleeps in between, and a completing thread wakes it only when the last call has ended or a timer
    it does not know of falls due first. A
    future that is already done when it is submitted (the in-process invoker) is queued and handled after
    the current step instead of re-entering it.
    """

    def __init__(
        self,
        invoker: Invoker,
        compiled: CompiledWorkflow,
        params: dict[str, str],
        on_node: Callable[[NodeStatus], None] | None,
        cond: threading.Condition | None = None,
        on_finish: Callable[[_Execution], None] | None = None,
    ) -> None:
        self.invoker = invoker
        self.wf = compiled
        self.params = params
        self.on_node = on_node
        self.globals = {f"workflow.parameters.{k}": v for k, v in params.items()}
        self.nodes: dict[str, NodeStatus] = {}
        self.states = {t.name: _TaskState(t) for t in compiled.tasks}
        self.waiting: list[_TaskState] = [self.states[t.name] for t in compiled.tasks]
        # Runs of one stream share their condition (workflows/engines/stream.py): the thread that ends
        # one run starts the next under it. ``on_finish`` is called (``cond`` held) when the last call ends.
        self.cond = cond or threading.Condition(threading.RLock())
        self.on_finish = on_finish
        self.finished = False
        self.stopped = False  # stop(): nothing new starts
        self.wake_below = 0  # also wake the sleeping thread once fewer calls than this are in flight
        self.started_wall, self.t0 = 0.0, 0.0
        self.pending: deque[tuple[_Call, int, cf.Future[Response]]] = deque()
        self.busy = False  # a thread is inside a step (holding ``cond``'s lock)
        self.timers: list[tuple[float, int, str, _Call, int]] = []
        self.seq = itertools.count()
        self.inflight = 0
        self.failed = False
        self.calls: list[_Call] = []  # every HTTP node started, to stop at the deadline
        self.deadline: float | None = None  # monotonic time at which activeDeadlineSeconds runs out
        self.expired = False
        # The monotonic time the run thread sleeps until (inf: no timeout); None while it is awake.
        self.sleep_until: float | None = None
        self.chain = getattr(invoker, "chain", None)  # follow-on calls (plan_follow_on), if it can
        self.flush = getattr(invoker, "flush", None)  # told after each step that its calls are sent
        self.nudge = getattr(invoker, "nudge", None)  # told when a run begins that calls will come
        self.follow_ons: dict[str, follow_on.FollowOn] = {}  # by the task they are sent ahead for
        self.whens: dict[str, tuple[bool, str]] = {}  # when_holds of conditions on parameters only

    # --- main loop --------------------------------------------------------------------------------
    def run(self) -> WorkflowRun:
        with self.cond:
            self.begin()
            while self.inflight:
                self.wait_once()
            return self.result()

    def begin(self, started_wall: float | None = None, t0: float | None = None) -> None:
        """Start the first tasks; ``cond`` held. The run's clock starts at ``t0`` (perf_counter), or now."""
        if self.nudge is not None:  # idle workers wake while the run is set up, not when its calls come
            self.nudge()
        self.started_wall = time.time() if started_wall is None else started_wall
        self.t0 = time.perf_counter() if t0 is None else t0
        if self.wf.active_deadline_s is not None:
            self.deadline = time.monotonic() + self.wf.active_deadline_s
        self.step(self.schedule)

    def wait_once(self) -> None:
        """Sleep until a completing thread or a timer wakes this thread, then fire timers; ``cond`` held."""
        wakeups = [self.timers[0][0]] if self.timers else []
        if self.deadline is not None and not self.expired:
            wakeups.append(self.deadline)
        self.sleep_until = min(wakeups) if wakeups else math.inf
        if not self.pending:
            self.cond.wait(max(0.0, self.sleep_until - time.monotonic()) if wakeups else None)
        self.sleep_until = None
        self.step(self.fire_timers)

    def stop(self) -> None:
        """Start nothing new, as after a failure with failFast; calls in flight end as they will."""
        self.stopped = True
        self.drop_follow_ons()

    def result(self, ended: tuple[float, float] | None = None) -> WorkflowRun:
        """The finished run's verdict and nodes; ``cond`` held.

        Args:
            ended: when it ended, (epoch seconds, perf_counter); now when omitted.
        """
        wall, clock = ended if ended is not None else (time.time(), time.perf_counter())
        phase, message = self.assess()
        nodes = list(self.nodes.values())
        return WorkflowRun(
            self.wf.name, phase, nodes, message, dict(self.params), self.started_wall, wall, clock - self.t0
        )

    def step(self, action: Callable[[], None]) -> None:
        """Run ``action``, then every queued response, then start what became ready; ``cond`` held."""
        self.busy = True
        try:
            action()
            while True:
                while self.pending:
                    self.on_done(*self.pending.popleft())
                self.schedule()  # may submit calls that are done at once: they land in ``pending``
                if not self.pending:
                    break
            self.plan_follow_on()
        finally:
            self.busy = False
        if self.flush is not None:
            self.flush()
        if self.inflight == 0 and self.on_finish is not None and not self.finished:
            self.finished = True
            self.on_finish(self)

    def completed(self, call: _Call, attempt: int, future: cf.Future[Response]) -> None:
        """A future's done-callback: handle the response now, on the completing thread."""
        with self.cond:
            self.pending.append((call, attempt, future))
            if self.busy:  # re-entered from inside a step (a future done at submit): the step drains it
                return
            self.step(lambda: None)
            if self.run_thread_must_wake():
                self.cond.notify()

    def run_thread_must_wake(self) -> bool:
        """Whether the run thread, asleep in ``run``, has something to do; ``cond`` held.

        It has when the last call ended, or a timer now falls before the time it sleeps until. Waking it
        for anything else costs the completing thread a thread switch on the critical path.
        """
        if self.sleep_until is None:
            return False  # not asleep: it re-reads ``inflight`` and the timers before it sleeps
        if self.inflight < self.wake_below:
            return True
        return self.inflight == 0 or bool(self.timers) and self.timers[0][0] < self.sleep_until

    def fire_timers(self) -> None:
        """Start the retries and fail the attempts whose time has come; ``cond`` held."""
        now = time.monotonic()
        if self.deadline is not None and not self.expired and now >= self.deadline:
            self.expire()
        while self.timers and self.timers[0][0] <= now:
            _, _, kind, call, attempt = heapq.heappop(self.timers)
            if kind == "retry":
                if not self.expired:
                    self.launch(call)
            elif call.attempt == attempt and call.open:  # a timeout for the attempt still in flight
                call.open = False
                if call.future is not None:
                    call.future.cancel()
                why = f"timeout: no response within {call.template.timeout:g}s"
                self.attempt_done(call, FAILED, why, None)

    def expire(self) -> None:
        """The deadline (activeDeadlineSeconds) ran out: fail the running nodes, start and retry nothing.

        As Argo does with a Workflow past its deadline: the running steps fail with "Step exceeded its
        deadline" and the Workflow fails. Calls in flight are abandoned (their answers are ignored);
        every step is idempotent, so a late side effect is the same one a rerun would make.
        """
        self.expired = True
        self.failed = True
        self.drop_follow_ons()
        for call in self.calls:
            if call.node.phase != RUNNING:
                continue
            if call.open:
                call.open = False
                if call.future is not None:
                    call.future.cancel()
            if call.span is not None:
                tracing.end_span(call.span, "deadline exceeded")
                call.span = None
            self.node_done(call.node, call.group, FAILED, "Step exceeded its deadline", inflight=True)

    def schedule(self) -> None:
        """Start (or omit) every waiting task whose dependencies are fulfilled.

        Topological order makes one pass enough: a task decided here is visible to its dependents later in
        the same pass.
        """
        still: list[_TaskState] = []
        for st in self.waiting:
            task = st.task
            ready = True
            satisfied = True
            for dep, accepted in task.deps:
                phase = self.states[dep].phase
                if phase is None or phase == RUNNING:
                    ready = False
                    break
                if phase not in accepted:
                    satisfied = False
            if not ready:
                still.append(st)
            elif not satisfied:
                self.finish_task(
                    st,
                    self.new_node(task.name, task, "Skipped", OMITTED, "omitted: depends condition not met"),
                )
            elif self.expired or self.stopped or (self.failed and self.wf.fail_fast):
                still.append(st)  # failFast, stopped or past the deadline: nothing new starts
            else:
                self.start(st)
        self.waiting = still

    # --- nodes ------------------------------------------------------------------------------------
    def new_node(
        self, name: str, task: Task, type_: str, phase: str = RUNNING, message: str = ""
    ) -> NodeStatus:
        node = NodeStatus(name, task.name, task.template.name, type_, phase, message=message)
        node.started = time.time()
        self.nodes[name] = node
        if phase != RUNNING:
            self.close_node(node, phase, message)
        return node

    def close_node(self, node: NodeStatus, phase: str, message: str) -> None:
        node.phase = phase
        node.message = message
        if phase in (SKIPPED, OMITTED) or node.attempts == 0 and node.type != "TaskGroup":
            node.finished, node.duration_s = node.started, 0.0  # never ran: no time, no cost
        else:
            node.finished = time.time()
            node.duration_s = node.finished - (node.started or node.finished)
        if self.on_node is not None:
            try:
                self.on_node(node)
            except Exception:  # an observer's bug must not wedge the run
                log.exception("on_node callback failed for %s", node.name)

    def finish_task(self, st: _TaskState, node: NodeStatus) -> None:
        st.node = node
        if node.phase in FAILED_OR_ERROR:
            self.failed = True

    # --- starting tasks ---------------------------------------------------------------------------
    def task_scope(self, task: Task, skip: str | None = None) -> dict[str, str]:
        """``task``'s ``{{tasks.T.outputs.result}}`` values (but for task ``skip``'s)."""
        scope: dict[str, str] = {}
        for ref in task.result_refs:
            if ref == skip:
                continue
            node = self.states[ref].node
            if node is None:
                continue
            value = fan_in(node, self.nodes) if node.type == "TaskGroup" else node.result
            if value is not None:
                scope[f"tasks.{ref}.outputs.result"] = value
        return scope

    def start(self, st: _TaskState) -> None:
        task = st.task
        try:
            scope = self.task_scope(task)
            items: list[Any] | None = None
            if task.with_param is not None:
                try:
                    raw = task.with_param.render((scope, self.globals))
                except KeyError as key:
                    raise _unresolved(key, "withParam") from None
                try:
                    items = json.loads(raw)
                except ValueError:
                    items = None
                if not isinstance(items, list):
                    raise _NodeError(
                        f"withParam value could not be parsed as a JSON list: {raw.strip()[:200]}"
                    )
            elif task.with_items is not None:
                items = list(task.with_items)
        except (_NodeError, FanInError) as exc:
            self.finish_task(st, self.new_node(task.name, task, "Skipped", ERROR, str(exc)))
            return

        if items is None:
            node = self.new_node(task.name, task, "HTTP")
            st.node = node
            call = self.new_call(node, task, (scope, self.globals), None)
            if call is not None:
                self.launch(call)
            return
        if not items:
            self.finish_task(st, self.new_node(task.name, task, "Skipped", SKIPPED, "Skipped, empty params"))
            return
        group = self.new_node(task.name, task, "TaskGroup")
        st.node = group
        st.pending = len(items)
        calls: list[_Call] = []
        for i, item in enumerate(items):
            child = self.new_node(_child_name(task.name, i, item), task, "HTTP")
            group.children.append(child.name)
            call = self.new_call(child, task, (_item_scope(item), scope, self.globals), st)
            if call is not None:
                calls.append(call)
        # Every request is rendered before the first goes out: the children start as close together
        # as the invoker can send them, not one rendering apart while the first ones already compete
        # with this thread for the CPU.
        for call in calls:
            self.launch(call)

    def new_call(
        self, node: NodeStatus, task: Task, scopes: tuple[Mapping[str, str], ...], group: _TaskState | None
    ) -> _Call | None:
        """The call of a node about to start, counted in flight; None if it is skipped or errs instead."""
        try:
            if task.when is not None:
                run_it, cond = self.when_holds(task, scopes)
                if not run_it:
                    node.type = "Skipped"
                    self.node_done(node, group, SKIPPED, f"when '{cond}' evaluated false")
                    return None
            url, method, headers, body = self.render_request(task, scopes)
        except _NodeError as exc:
            self.node_done(node, group, ERROR, str(exc))
            return None
        call = _Call(node, task.template, (url, method, headers, body.encode()), group)
        self.inflight += 1
        self.calls.append(call)
        return call

    def when_holds(self, task: Task, scopes: tuple[Mapping[str, str], ...]) -> tuple[bool, str]:
        """Whether ``task``'s ``when`` holds, and its text after substitution; _NodeError if it cannot say."""
        assert task.when is not None
        # A condition on workflow parameters only is the same all run long: decided once (a follow-on
        # plan asks while the step before runs; the start then finds the answer).
        constant = all(ref.startswith("workflow.") for ref in task.when.refs)
        if constant and task.name in self.whens:
            return self.whens[task.name]
        try:
            values = task.when.values(scopes)
        except KeyError as key:
            raise _unresolved(key, "when") from None
        cond = task.when.fill(values)
        holds = slotted_expression(task.when.parts).evaluate_bool(values)
        if holds is None:  # the template cannot be parsed once for all values: parse this text
            try:
                holds = compile_expression(cond, bare_words=True).evaluate_bool()
            except ExpressionError as exc:
                raise _NodeError(f"invalid 'when' expression: {exc}") from None
        if constant:
            self.whens[task.name] = (holds, cond)
        return holds, cond

    def render_request(
        self, task: Task, scopes: tuple[Mapping[str, str], ...]
    ) -> tuple[str, str, dict[str, str], str]:
        """(url, method, headers, body) of ``task``'s HTTP call; _NodeError naming an unresolved name."""
        tmpl = task.template
        inputs: dict[str, str] = {}
        for name, text in task.args:
            try:
                inputs[f"inputs.parameters.{name}"] = text.render(scopes)
            except KeyError as key:
                raise _unresolved(key, f"argument {name!r}") from None
        for name, default in tmpl.inputs:
            input_key = f"inputs.parameters.{name}"
            if input_key not in inputs and default is not None:
                inputs[input_key] = default
        tscopes = (inputs, self.globals)
        try:
            url = tmpl.url.render(tscopes)
            method = tmpl.method.render(tscopes)
            headers = {k.render(tscopes): v.render(tscopes) for k, v in tmpl.headers}
            return url, method, headers, tmpl.body.render(tscopes)
        except KeyError as key:
            raise _unresolved(key, f"template {tmpl.name!r}") from None

    # --- follow-ons -------------------------------------------------------------------------------
    def plan_follow_on(self) -> None:
        """Send the next step ahead to the worker running the only call in flight; ``cond`` held.

        When one call C is in flight and a waiting task T will start if and only if C succeeds (its
        other dependencies are done and satisfied, its ``when`` holds without C's result, C's success
        is a 2xx status), T's call is sent now, with a hole where C's result goes. The worker starts it
        the moment C answers 2xx, and the engine adopts it when it starts T in the usual way
        (:meth:`launch`), so nodes, retries and timeouts are as without it. Off while tracing (a step's
        span, the function's parent, starts only when the step does) or when the invoker cannot chain.
        """
        if self.chain is None or self.inflight != 1 or self.expired or self.failed or self.stopped:
            return
        if tracing.enabled():
            return
        call = next((c for c in reversed(self.calls) if c.open), None)
        if call is None or call.future is None or not follow_on.decided_by_status(call.template):
            return
        if any(f.after is call for f in self.follow_ons.values()):
            return
        if call.group is not None and not follow_on.last_of_group(call.node.name, call.group, self.nodes):
            return
        for st in self.waiting:
            task = st.task
            if not follow_on.starts_iff_succeeds(task, call.node.task, self.states):
                continue
            planned = self.follow_on_request(task, call)
            if planned is not None:
                planned.future = self.chain(call.future, planned.ahead)
                if planned.future is not None:
                    self.follow_ons[task.name] = planned
            return

    def follow_on_request(self, task: Task, call: _Call) -> follow_on.FollowOn | None:
        """``task``'s request with a hole for ``call``'s result, if ``task`` would run once it succeeds."""
        key = f"tasks.{call.node.task}.outputs.result"
        try:
            scope = self.task_scope(task, skip=call.node.task)  # not a running group's partial fan-in
            if task.when is not None and not self.when_holds(task, (scope, self.globals))[0]:
                return None
            hole = follow_on.new_hole()
            group = call.group.node if call.group is not None else None
            scope[key] = fan_in(group, self.nodes, (call.node.name, hole)) if group is not None else hole
            url, method, headers, body = self.render_request(task, (scope, self.globals))
        except (_NodeError, FanInError):
            return None  # the usual start reports it
        return follow_on.FollowOn.plan(call, (url, method, headers, body), hole, compact=group is not None)

    def drop_follow_ons(self, after: _Call | None = None) -> None:
        """Forget the follow-ons of ``after`` (all when None): they were skipped, or are abandoned."""
        for name in [n for n, f in self.follow_ons.items() if after is None or f.after is after]:
            del self.follow_ons[name]

    # --- attempts ---------------------------------------------------------------------------------
    def launch(self, call: _Call) -> None:
        call.attempt += 1
        call.node.attempts = call.attempt
        call.open = True
        now = time.monotonic()
        if call.attempt == 1:
            call.first_start = now
        call.t0 = now
        url, method, headers, body = call.request
        timeout = call.template.timeout
        if tracing.enabled():
            # One span per attempt, a child of the iteration's (the workflow's traceparent parameter);
            # the function continues this span's trace, not the iteration's directly.
            parent = {tracing.TRACEPARENT: self.params.get(tracing.TRACEPARENT, "")}
            call.span = tracing.start_span(
                f"step {call.node.name}",
                headers=parent,
                attributes={
                    "argo.node": call.node.name,
                    "argo.template": call.template.name,
                    "attempt": call.attempt,
                },
            )
            headers = tracing.inject(dict(headers), call.span)
        planned = self.follow_ons.pop(call.node.task, None) if call.attempt == 1 else None
        future = planned.adopt(call.request) if planned is not None else None
        if future is None:
            try:
                future = self.invoker.submit(url, method, headers, body, timeout)
            except Exception as exc:  # e.g. a URL no invoker handles: the step errors, like an agent error
                call.open = False
                self.attempt_done(call, ERROR, f"cannot submit {method} {url}: {exc}", None)
                return
        call.future = future
        if timeout is not None:
            heapq.heappush(self.timers, (now + timeout, next(self.seq), "timeout", call, call.attempt))
        attempt = call.attempt
        future.add_done_callback(lambda f: self.completed(call, attempt, f))

    def on_done(self, call: _Call, attempt: int, future: cf.Future[Response]) -> None:
        if attempt != call.attempt or not call.open:
            return  # the attempt already timed out
        call.open = False
        try:
            resp = future.result()
        except cf.CancelledError:
            self.attempt_done(call, FAILED, "call cancelled", None)
            return
        except Exception as exc:
            self.attempt_done(call, FAILED, f"{type(exc).__name__}: {exc}", None)
            return
        tmpl = call.template
        cond = tmpl.success
        detail = ""
        try:
            if cond is None and tmpl.success_text is not None:
                cond = compile_expression(tmpl.success_text.render((self.globals,)))
            if cond is None:
                ok = 200 <= resp.status < 300
                message = "" if ok else non_2xx_message(resp.status)
            else:
                ok = cond.evaluate_bool({"response.statusCode": resp.status, "response.body": resp.body})
                # Argo's message names no status; the node shows it, the retry expression does not see it.
                message = "" if ok else f"successCondition '{cond.text}' evaluated false"
                detail = f" (status {resp.status})"
        except (ExpressionError, KeyError) as exc:
            ok, message = False, f"successCondition: {exc}"
        self.attempt_done(call, SUCCEEDED if ok else FAILED, message, resp, detail)

    def attempt_done(
        self, call: _Call, phase: str, message: str, resp: Response | None, detail: str = ""
    ) -> None:
        """Record one attempt's end; retry it or finish the node.

        Args:
            call: the node's call.
            phase: the attempt's phase.
            message: the attempt's message as the Argo agent writes it (``lastRetry.message``).
            resp: the response, if one came.
            detail: shown after the message on the node only.
        """
        node = call.node
        now = time.monotonic()
        if call.span is not None:
            error = None if phase == SUCCEEDED else message or phase
            status = {"http.response.status_code": resp.status} if resp is not None else {}
            tracing.end_span(call.span, error, **status)
            call.span = None
        node.call_s += now - call.t0
        node.status_code = None if resp is None else resp.status
        node.result = None if resp is None else resp.body
        if phase != SUCCEEDED:
            self.drop_follow_ons(call)
        if phase == SUCCEEDED:
            self.node_done(node, call.group, SUCCEEDED, "", inflight=True)
            return
        verdict = self.retry_verdict(call, phase, message, now)
        if isinstance(verdict, str):
            self.node_done(node, call.group, phase, f"{message}{detail}{verdict}", inflight=True)
            return
        node.message = f"{message}{detail} (attempt {call.attempt}; retrying in {verdict:g}s)"
        heapq.heappush(self.timers, (now + verdict, next(self.seq), "retry", call, call.attempt))

    def retry_verdict(self, call: _Call, phase: str, message: str, now: float) -> float | str:
        """Seconds to wait before the next attempt, or the reason (suffix) why there is none.

        See :func:`workflows.engines.retry.decide`.
        """
        return decide(
            call.template.retry, call.attempt, phase, message, now - call.t0, now - call.first_start
        )

    def node_done(
        self, node: NodeStatus, group: _TaskState | None, phase: str, message: str, inflight: bool = False
    ) -> None:
        if inflight:
            self.inflight -= 1
        self.close_node(node, phase, message)
        if group is None:
            self.finish_task(self.states[node.task], node)
            return
        group.pending -= 1
        if group.pending:
            return
        gnode = group.node
        assert gnode is not None
        group_phase, why = SUCCEEDED, ""
        for name in gnode.children:  # Argo keeps the last failed child's phase
            child = self.nodes[name]
            if child.phase in FAILED_OR_ERROR:
                group_phase, why = child.phase, f"child '{name}' {child.phase.lower()}: {child.message}"
        self.close_node(gnode, group_phase, why)
        self.finish_task(group, gnode)

    # --- the verdict ------------------------------------------------------------------------------
    def assess(self) -> tuple[str, str]:
        if self.expired:
            return FAILED, f"activeDeadlineSeconds ({self.wf.active_deadline_s}s) exceeded"
        branch: dict[str, str] = {}
        for task in self.wf.tasks:  # topological: dependencies first
            phase = self.states[task.name].phase
            if phase == OMITTED:
                inherited = [branch[d] for d, _ in task.deps if branch.get(d) in FAILED_OR_ERROR]
                phase = inherited[0] if inherited else SUCCEEDED
            branch[task.name] = phase or ""
        result = SUCCEEDED
        for leaf in self.wf.leaves:
            if branch[leaf] in FAILED_OR_ERROR:
                result = branch[leaf]
                if self.wf.fail_fast:
                    break
        failures = [n for n in self.nodes.values() if n.phase in FAILED_OR_ERROR and n.type != "TaskGroup"]
        failures = failures or [n for n in self.nodes.values() if n.phase in FAILED_OR_ERROR]
        if result == SUCCEEDED and failures:
            result = failures[0].phase  # a failure whose branch never reached a leaf (failFast stopped it)
        if result == SUCCEEDED:
            return result, ""
        first = failures[0] if failures else None
        return result, f"{first.name}: {first.message}" if first else "DAG did not complete"


def resolve_parameters(compiled: CompiledWorkflow, parameters: Mapping[str, str]) -> dict[str, str]:
    """The run's parameter values: those given, then the declared defaults.

    Raises:
        WorkflowParameterError: an undeclared, non-string, missing or out-of-enum parameter.
    """
    declared = {p.name: p for p in compiled.parameters}
    unknown = sorted(set(parameters) - set(declared))
    if unknown:
        raise WorkflowParameterError(
            f"unknown parameter(s) for {compiled.name}: {', '.join(unknown)} "
            f"(declared: {', '.join(declared)})"
        )
    bad = sorted(k for k, v in parameters.items() if not isinstance(v, str))
    if bad:
        raise WorkflowParameterError(f"parameter values must be strings: {', '.join(bad)}")
    values: dict[str, str] = {}
    missing: list[str] = []
    for name, spec in declared.items():
        value = parameters.get(name, spec.value)
        if value is None:
            missing.append(name)
            continue
        if spec.enum is not None and value not in spec.enum:
            raise WorkflowParameterError(f"parameter {name}={value!r} is not one of {list(spec.enum)}")
        values[name] = value
    if missing:
        raise WorkflowParameterError(
            f"missing required parameter(s) for {compiled.name}: {', '.join(missing)}"
        )
    return values


class LocalEngine:
    """Runs one compiled workflow in this process, calling functions through ``invoker``.

    Args:
        invoker: how calls reach the functions; the engine owns it (``close`` closes it).
        compiled: the workflow to run; the project's iteration template when omitted.
        gateway: base URL of the functions for :meth:`call` (``local://gateway`` runs them through the
            local invoker, an ``http(s)://`` URL through the HTTP one).
        iterations_per_workflow: iterations the driver hands :meth:`run_iterations` at once; more than
            one streams them (:mod:`workflows.engines.stream`).
    """

    def __init__(
        self,
        invoker: Invoker,
        compiled: CompiledWorkflow | None = None,
        *,
        gateway: str = LOCAL_GATEWAY,
        iterations_per_workflow: int = 1,
    ) -> None:
        if iterations_per_workflow < 1:
            raise ValueError(f"iterations_per_workflow must be >= 1, got {iterations_per_workflow}")
        if compiled is None:
            from workflows.iteration import iteration_manifest  # Hera is only needed for the default

            compiled = compile_workflow(iteration_manifest())
        self.invoker = invoker
        self.compiled = compiled
        self._gateway = gateway.rstrip("/")
        self._retries = function_retries(compiled)
        self.iterations_per_workflow = iterations_per_workflow

    @property
    def gateway(self) -> str:
        """Base URL of the function gateway."""
        return self._gateway

    def run(
        self, parameters: Mapping[str, str], on_node: Callable[[NodeStatus], None] | None = None
    ) -> WorkflowRun:
        """Execute the workflow once.

        Args:
            parameters: workflow parameter values (strings); declared defaults fill the rest.
            on_node: called as each node reaches its final phase, one call at a time, on the thread that
                saw it end (this one, or the one that completed the call).

        Raises:
            WorkflowParameterError: the parameters do not match the declared ones.
        """
        params = resolve_parameters(self.compiled, parameters)
        return _Execution(self.invoker, self.compiled, params, on_node).run()

    def run_iterations(self, parameters: Sequence[Mapping[str, str]]) -> Generator[WorkflowRun, None, None]:
        """Run the workflow once per parameter set, back to back; yield each run as it ends.

        The next run starts the moment the previous one's last call ends, while the caller handles that
        one (:class:`workflows.engines.stream.IterationStream`). After a run that did not succeed
        nothing follows. Closing the iterator early starts nothing new and waits for the calls in
        flight.

        Raises:
            WorkflowParameterError: a parameter set does not match the declared parameters.
        """
        from workflows.engines.stream import IterationStream  # it builds on this module

        if len(parameters) == 1:
            yield self.run(parameters[0])
            return
        resolved = [resolve_parameters(self.compiled, p) for p in parameters]
        stream = IterationStream(self.invoker, self.compiled, resolved)
        try:
            while (wf := stream.next_run()) is not None:
                yield wf
        finally:
            stream.stop()

    def call(
        self, function: str, body: Mapping[str, Any], *, headers: Mapping[str, str] | None = None
    ) -> dict[str, Any]:
        """Call one function directly through the invoker (see :meth:`Engine.call`).

        Retried as the workflow's step calling the same function is (its template's ``retryStrategy``).
        """
        retry = self._retries.get(function)
        return call_function(self.invoker, self._gateway, function, body, headers, retry=retry)

    def close(self) -> None:
        """Close the invoker (its worker pool and HTTP connections)."""
        close = getattr(self.invoker, "close", None)
        if callable(close):
            close()
