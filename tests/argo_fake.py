"""A stand-in Argo Workflows server for tests: the real REST paths and shapes, the DAG executed by
the embedded engine.

It records every request (to check against Argo's published schema), keeps WorkflowTemplates
(409 on re-create, resourceVersion on update, as the real server), and runs each submitted Workflow
in a background thread, answering ``GET`` with ``Running`` until it is done and then with an
Argo-shaped ``status``: a DAG root node, ``TaskGroup`` nodes for ``withParam`` tasks, ``Retry`` nodes
wrapping the HTTP attempts, ``Skipped`` nodes, RFC 3339 timestamps and ``outputs.result``. A chaining
Workflow (``templateRef`` calls of the iteration DAG) is inlined and run the same way
(:mod:`workflows.engines.chain`); each call is a DAG node and its steps carry the call's ``boundaryID``.

``PUT .../{name}/terminate`` sets ``spec.shutdown`` and fails a running Workflow with Argo's message;
a finished one answers Argo's "cannot shutdown a completed workflow" error.

Knobs for the paths a cluster can take:
    hold: submitted Workflows never start (the engine's timeout and interrupt paths).
    die_after: ``(j, committed)``: a chaining Workflow dies after ``j`` of its iterations; with
        ``committed`` iteration ``j`` itself ran to its end first, but its results never reached
        the Workflow (the agent died before patching them back).
    timing: stamp nodes and Workflows in simulated time after :mod:`workflows.argo_latency` (start
        latency, patch period, reconcile per level), starting at ``VIRTUAL_EPOCH``; nothing sleeps.
"""

from __future__ import annotations

import copy
import itertools
import json
import threading
from dataclasses import replace
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workflows.argo_latency import ArgoTiming, workflow_timeline
from workflows.engines.base import NodeStatus, WorkflowRun
from workflows.engines.chain import expand_chain, is_chain, split_node_name
from workflows.engines.compiler import CompiledWorkflow
from workflows.engines.invokers import HttpInvoker, InProcessInvoker, RoutingInvoker
from workflows.engines.local import LocalEngine, compile_workflow

# 2027-01-15 08:00 UTC: simulated time is far from the real clock, so a mix-up shows.
VIRTUAL_EPOCH = 1_800_000_000.0
TERMINATED = "Stopped with strategy 'Terminate'"


def _ts(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def _task_nodes(
    nodes: list[NodeStatus], root: str, boundary: str, prefix: str
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """Argo nodes of one DAG's tasks (ids ``<prefix>-<i>``) and the ids of its top-level tasks."""
    out: dict[str, dict[str, Any]] = {}
    ids = {n.name: f"{prefix}-{i}" for i, n in enumerate(nodes)}
    top = []
    for n in nodes:
        nid = ids[n.name]
        base: dict[str, Any] = {
            "id": nid,
            "name": f"{root}.{n.name}",
            "displayName": n.name,
            "templateName": n.template,
            "phase": n.phase,
            "boundaryID": boundary,
            "startedAt": _ts(n.started),
            "finishedAt": _ts(n.finished),
        }
        if n.message:
            base["message"] = n.message
        if "(" not in n.name:
            top.append(nid)
        if n.type == "TaskGroup":
            out[nid] = {**base, "type": "TaskGroup", "children": [ids[c] for c in n.children]}
        elif n.type == "HTTP":
            attempts = []
            for k in range(n.attempts):
                aid = f"{nid}-a{k}"
                last = k == n.attempts - 1
                attempt: dict[str, Any] = {
                    **base,
                    "id": aid,
                    "name": f"{root}.{n.name}({k})",
                    "displayName": f"{n.name}({k})",
                    "type": "HTTP",
                    "phase": n.phase if last else "Failed",
                }
                attempt.pop("message", None)
                if last and n.result is not None:
                    attempt["outputs"] = {"result": n.result}
                out[aid] = attempt
                attempts.append(aid)
            node = {**base, "type": "Retry", "children": attempts}
            if n.result is not None:
                node["outputs"] = {"result": n.result}
            out[nid] = node
        else:
            out[nid] = {**base, "type": "Skipped"}
    return out, top


def _status(run: WorkflowRun, nodes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "phase": run.phase,
        "startedAt": _ts(run.started),
        "finishedAt": _ts(run.finished),
        "message": run.message,
        "nodes": nodes,
    }


def argo_status(run: WorkflowRun) -> dict[str, Any]:
    """The ``status`` of a one-iteration Workflow the embedded engine ran."""
    root = run.name
    nodes, top = _task_nodes(run.nodes, root, root, root)
    nodes[root] = {
        "id": root,
        "name": root,
        "displayName": root,
        "type": "DAG",
        "templateName": "iteration",
        "phase": run.phase,
        "children": top,
    }
    return _status(run, nodes)


def _call_node(
    root: str, cid: str, call: str, inner: list[NodeStatus], top: list[str], ref: dict[str, Any]
) -> dict[str, Any]:
    bad = [n for n in inner if n.phase in ("Failed", "Error")]
    phase = bad[0].phase if bad else "Succeeded"
    node = {
        "id": cid,
        "name": f"{root}.{call}",
        "displayName": call,
        "type": "DAG",
        "templateName": ref["template"],
        "templateRef": ref,
        "phase": phase,
        "boundaryID": root,
        "children": top,
        "startedAt": _ts(min((n.started for n in inner if n.started is not None), default=None)),
        "finishedAt": _ts(max((n.finished for n in inner if n.finished is not None), default=None)),
    }
    if bad:
        node["message"] = bad[0].message
    return node


def chain_status(
    run: WorkflowRun, calls: list[str], ref: dict[str, Any], died: tuple[str, str] | None = None
) -> dict[str, Any]:
    """The ``status`` of a chaining Workflow: one DAG node per call, its steps inside it.

    Args:
        run: the inlined chain as the embedded engine ran it.
        calls: the calls, in order.
        ref: the calls' ``templateRef``.
        died: (call, message): that call is Failed with no steps reported, and none after it ran.
    """
    root = run.name
    nodes: dict[str, dict[str, Any]] = {}
    by_call: dict[str, list[NodeStatus]] = {c: [] for c in calls}
    for n in run.nodes:
        call, inner = split_node_name(n.name)
        if call in by_call:
            children = [split_node_name(c)[1] for c in n.children]
            by_call[call].append(replace(n, name=inner, task=inner.split("(")[0], children=children))
    top: list[str] = []
    for k, call in enumerate(calls):
        cid = f"{root}-c{k}"
        if died is not None and call == died[0]:
            nodes[cid] = {**_call_node(root, cid, call, [], [], ref), "phase": "Failed", "message": died[1]}
            top.append(cid)
            break
        if not by_call[call]:
            break
        inner_nodes, inner_top = _task_nodes(by_call[call], f"{root}.{call}", cid, cid)
        nodes.update(inner_nodes)
        nodes[cid] = _call_node(root, cid, call, by_call[call], inner_top, ref)
        top.append(cid)
    nodes[root] = {
        "id": root,
        "name": root,
        "displayName": root,
        "type": "DAG",
        "templateName": "chain",
        "phase": run.phase,
        "children": top,
    }
    return _status(run, nodes)


def _levels(compiled: CompiledWorkflow) -> dict[str, int]:
    """Each task's DAG level: 0 for tasks with no dependency, else one more than its deepest one."""
    depth: dict[str, int] = {}
    for t in compiled.tasks:  # topological order
        depth[t.name] = 1 + max((depth[d] for d, _ in t.deps), default=-1)
    return depth


def restamp(run: WorkflowRun, compiled: CompiledWorkflow, timing: ArgoTiming, start: float) -> float:
    """Move ``run``'s timestamps into simulated time after the latency model; returns when the driver
    notices it done.

    A level's compute time is its slowest call's measured duration; a level where nothing was called
    (a skipped ``evaluate``) is no level (see :mod:`workflows.argo_latency`). A node starts with its
    level and finishes at the reconcile that reads its result (Argo's controller stamps ``finishedAt``
    when it marks a node done), so a call DAG node ends where the next level begins.
    """
    depth = _levels(compiled)
    called = sorted({depth[n.task] for n in run.nodes if n.type == "HTTP" and n.attempts})
    compute = [
        max(n.duration_s or 0.0 for n in run.nodes if depth[n.task] == d and n.type == "HTTP") for d in called
    ]
    timeline = workflow_timeline(compute, timing)
    marks = [*timeline.starts, timeline.finished]  # marks[i + 1]: the reconcile that ends level i
    for n in run.nodes:
        # An uncalled node is decided in the reconcile that starts the next called level.
        i = sum(d < depth[n.task] for d in called)
        ran = depth[n.task] in called and (n.type != "HTTP" or n.attempts > 0)
        n.started = start + marks[i]
        n.finished = start + (marks[i + 1] if ran else marks[i])
        n.duration_s = n.finished - n.started
    run.started, run.finished = start, start + timeline.finished
    run.duration_s = timeline.finished
    return start + timeline.noticed


class FakeArgo:
    def __init__(
        self,
        token: str,
        *,
        hold: bool = False,
        die_after: tuple[int, bool] | None = None,
        timing: ArgoTiming | None = None,
    ) -> None:
        self.token = token
        self.hold = hold
        self.die_after = die_after
        self.timing = timing
        self.virtual_now = VIRTUAL_EPOCH
        self.requests: list[dict[str, Any]] = []
        self.templates: dict[str, dict[str, Any]] = {}
        self.workflows: dict[str, dict[str, Any]] = {}
        self._names = itertools.count()
        self._lock = threading.Lock()
        self.invoker = RoutingInvoker(local=InProcessInvoker(), http=HttpInvoker())
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.invoker.close()

    @property
    def terminated(self) -> list[str]:
        """Names of the Workflows a terminate request reached, in order."""
        return [
            r["path"].rstrip("/").split("/")[-2]
            for r in self.requests
            if r["method"] == "PUT" and r["path"].endswith("/terminate")
        ]

    def _compile(self, workflow: dict[str, Any]) -> tuple[CompiledWorkflow, list[str], dict[str, Any]]:
        """The Workflow compiled for the embedded engine; for a chain also its calls and their ref."""
        if not is_chain(workflow):
            ref = workflow["spec"]["workflowTemplateRef"]["name"]
            return compile_workflow(workflow, templates={ref: self.templates[ref]}), [], {}
        spec = workflow["spec"]
        dag = next(t for t in spec["templates"] if t["name"] == spec["entrypoint"])["dag"]
        calls = [t["name"] for t in dag["tasks"]]
        ref = dag["tasks"][0]["templateRef"]
        if self.die_after is not None:
            j, committed = self.die_after
            dag["tasks"] = dag["tasks"][: j + int(committed)]
        return compile_workflow(expand_chain(workflow, self.templates)), calls, ref

    def _execute(self, name: str, workflow: dict[str, Any]) -> None:
        compiled, calls, ref = self._compile(copy.deepcopy(workflow))
        params = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
        run = LocalEngine(self.invoker, compiled).run(params)
        run.name = name
        died = None
        if calls and self.die_after is not None and self.die_after[0] < len(calls):
            died = (
                calls[self.die_after[0]],
                f"stand-in: the Workflow died after {self.die_after[0]} iterations",
            )
            run.phase, run.message = "Failed", died[1]
        if self.timing is not None:
            with self._lock:
                start = self.virtual_now
            noticed = restamp(run, compiled, self.timing, start)
            with self._lock:
                self.virtual_now = max(self.virtual_now, noticed)
        status = chain_status(run, calls, ref, died) if calls else argo_status(run)
        with self._lock:
            wf = self.workflows[name]
            if wf["spec"].get("shutdown"):
                return  # terminated while it ran: the status says so already
            wf["status"] = status

    def _terminate(self, name: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            wf = self.workflows.get(name)
            if wf is None:
                return 404, {"code": 5, "message": f'workflows.argoproj.io "{name}" not found'}
            if wf["status"]["phase"] in ("Succeeded", "Failed", "Error"):
                namespace = wf["metadata"]["namespace"]
                message = (
                    f'cannot shutdown a completed workflow: workflow: "{name}", namespace: "{namespace}"'
                )
                return 500, {"code": 2, "message": message}
            wf["spec"]["shutdown"] = "Terminate"
            wf["status"] = {**wf["status"], "phase": "Failed", "message": TERMINATED}
            return 200, json.loads(json.dumps(wf))

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        return type("Handler", (_ArgoHandler,), {"fake": self})


class _ArgoHandler(BaseHTTPRequestHandler):
    """The Argo server API paths the engine uses; ``fake`` holds the state (set per server)."""

    fake: FakeArgo

    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def _reply(self, code: int, obj: Any) -> None:
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _record(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length)) if length else None
        self.fake.requests.append(
            {
                "method": self.command,
                "path": self.path,
                "body": body,
                "authorization": self.headers.get("Authorization"),
            }
        )
        return body

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.fake.token}":
            self._reply(401, {"code": 16, "message": "token not valid"})
            return False
        return True

    def do_POST(self) -> None:
        body = self._record()
        if not self._authorised():
            return
        parts = self.path.strip("/").split("/")  # api v1 <kind> <namespace>
        if parts[2] == "workflow-templates":
            tpl = body["template"]
            name = tpl["metadata"]["name"]
            if name in self.fake.templates:
                self._reply(409, {"code": 6, "message": f'workflowtemplates "{name}" already exists'})
                return
            tpl["metadata"]["resourceVersion"] = "1"
            self.fake.templates[name] = tpl
            self._reply(200, tpl)
        elif parts[2] == "workflows":
            wf = body["workflow"]
            name = wf["metadata"]["generateName"] + f"x{next(self.fake._names)}"
            wf["metadata"] = {**wf["metadata"], "name": name, "namespace": parts[3]}
            wf["status"] = {"phase": "Running"}
            with self.fake._lock:
                self.fake.workflows[name] = wf
            if not self.fake.hold:
                threading.Thread(target=self.fake._execute, args=(name, wf), daemon=True).start()
            self._reply(200, wf)
        else:
            self._reply(404, {"code": 5, "message": "not found"})

    def do_PUT(self) -> None:
        body = self._record()
        if not self._authorised():
            return
        parts = self.path.strip("/").split("/")  # api v1 <kind> <namespace> <name> [action]
        if parts[2] == "workflows" and len(parts) == 6 and parts[5] == "terminate":
            if (body or {}).get("name") not in (None, parts[4]):
                self._reply(400, {"code": 3, "message": "the body names another workflow"})
                return
            self._reply(*self.fake._terminate(parts[4]))
            return
        name = parts[-1]
        tpl = body["template"]
        current = self.fake.templates[name]["metadata"]["resourceVersion"]
        if tpl["metadata"].get("resourceVersion") != current:
            self._reply(409, {"code": 10, "message": "the object has been modified"})
            return
        tpl["metadata"]["resourceVersion"] = str(int(tpl["metadata"]["resourceVersion"]) + 1)
        self.fake.templates[name] = tpl
        self._reply(200, tpl)

    def do_GET(self) -> None:
        self._record()
        if not self._authorised():
            return
        parts = self.path.strip("/").split("/")
        store = self.fake.templates if parts[2] == "workflow-templates" else self.fake.workflows
        with self.fake._lock:
            obj = json.loads(json.dumps(store.get(parts[4]))) if parts[4] in store else None
        if obj is None:
            self._reply(404, {"code": 5, "message": "not found"})
        else:
            self._reply(200, obj)
