"""Follow-on calls: the embedded engine sends a step ahead to the worker running the step it waits for.

The iteration DAG is a chain of levels, and between two levels the answer used to travel worker ->
engine, the engine started the next step, and the call travelled engine -> worker: two process wake-ups
and two hand-offs, each on caches a 20 ms function body has left cold (about 0.3-0.5 ms a level on a
2-core VM). A follow-on removes that round trip from the critical path: while call C runs, the engine
renders the next step T's request with a hole where C's result goes and queues it on C's worker
(:meth:`workflows.engines.invokers.PoolInvoker.chain`); the worker fills the hole and starts T as soon
as it has sent C's answer.

The engine's bookkeeping does not change: T's node is created, timed and retried when the engine starts
T in the usual way, and it adopts the call already running (:meth:`FollowOn.adopt`). That is only sound
when the worker's rule "run T if C answered 2xx" is the engine's own decision, so a follow-on is planned
only when:

- C is the only call in flight (nothing else can fail and stop the DAG first), its success is a 2xx
  status (no ``successCondition``) and, in a fan-out, its siblings have all succeeded;
- T is a single call whose dependencies other than C are done and satisfied, whose dependency on C
  accepts Succeeded and neither Failed nor Error, and whose ``when`` holds without C's result.

If C fails, the worker does not start T, and the engine forgets the plan (a retry of C may plan again).
A plan the engine cannot adopt (the deadline ran out, C timed out in the engine's eyes but answered 2xx
later) leaves T's answer ignored, as any abandoned call's: every step is idempotent.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ftg_common.faas import Response
from workflows.engines.base import ERROR, FAILED, RUNNING, SUCCEEDED, NodeStatus
from workflows.engines.compiler import HttpTemplate, Task
from workflows.engines.invokers import Ahead
from workflows.engines.pool_frames import fill_follow_on

log = logging.getLogger(__name__)

__all__ = ["FollowOn", "decided_by_status", "last_of_group", "new_hole", "starts_iff_succeeds"]


def new_hole() -> str:
    """A placeholder for the awaited result: random, so no template text can contain it."""
    return f"ftg-follow-on-{secrets.token_hex(12)}"


def decided_by_status(template: HttpTemplate) -> bool:
    """Whether a call of ``template`` succeeds exactly when it answers 2xx (no ``successCondition``)."""
    return template.success is None and template.success_text is None


def last_of_group(child: str, group: Any, nodes: Mapping[str, NodeStatus]) -> bool:
    """Whether ``child`` is its fan-out's last running child and every other child succeeded.

    Args:
        child: the running child's node name.
        group: the task's state (``pending`` children, its group ``node``).
        nodes: every node by name.
    """
    if group.pending != 1 or group.node is None:
        return False
    return all(nodes[name].phase == SUCCEEDED for name in group.node.children if name != child)


def starts_iff_succeeds(task: Task, after: str, states: Mapping[str, Any]) -> bool:
    """Whether ``task`` (a single call) starts once task ``after`` succeeds, and only then.

    Args:
        task: a waiting task.
        after: the task of the only call in flight.
        states: each task's state; its ``phase`` is None before it starts.
    """
    if task.with_param is not None or task.with_items is not None:
        return False
    waits = False
    for dep, accepted in task.deps:
        if dep == after:
            if SUCCEEDED not in accepted or FAILED in accepted or ERROR in accepted:
                return False
            waits = True
            continue
        phase = states[dep].phase
        if phase is None or phase == RUNNING or phase not in accepted:
            return False
    return waits


@dataclass
class FollowOn:
    """A step's call sent ahead, to run after call ``after`` on ``after``'s worker.

    Attributes:
        after: the engine's call it follows (its ``node`` holds the result once it answers).
        method: the request's method as the engine renders it.
        ahead: what the invoker sends: URL, headers, and the body's bytes around the holes
            (``compact`` when ``after`` is a fan-out child, whose result its group's fan-in compacts).
        future: the call's Future, once the invoker has queued it.
    """

    after: Any
    method: str
    ahead: Ahead
    future: cf.Future[Response] | None = None

    @classmethod
    def plan(
        cls, after: Any, request: tuple[str, str, dict[str, str], str], hole: str, *, compact: bool
    ) -> FollowOn | None:
        """The follow-on of ``request``, rendered with ``hole`` where the result goes.

        None unless only the body holds the hole: a URL or header naming the result is left to the
        usual start.
        """
        url, method, headers, body = request
        if any(hole in text for text in (url, method, *headers, *headers.values())):
            return None
        return cls(after, method, Ahead(url, headers, [p.encode() for p in body.split(hole)], compact))

    def adopt(self, request: tuple[str, str, dict[str, str], bytes]) -> cf.Future[Response] | None:
        """The running call, if it is the one the engine now starts (``request``); else None.

        A mismatch would be a bug in rendering (the same templates, the same values); the sent-ahead
        call then runs unobserved, and the engine submits the step as usual.
        """
        result = self.after.node.result
        if self.future is None or result is None:
            return None
        ahead = self.ahead
        try:
            body = fill_follow_on(result, ahead.parts, ahead.compact)
        except ValueError:
            return None
        if (ahead.url, self.method, ahead.headers, body) == request:
            return self.future
        log.error("follow-on of %s does not match the step's request; submitting it again", ahead.url)
        return None
