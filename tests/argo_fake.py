"""A stand-in Argo Workflows server for tests: the real REST paths and shapes, the DAG executed by
the embedded engine.

It records every request (to check against Argo's published schema), keeps WorkflowTemplates
(409 on re-create, resourceVersion on update, as the real server), and runs each submitted Workflow
in a background thread, answering ``GET`` with ``Running`` until it is done and then with an
Argo-shaped ``status``: a DAG root node, ``TaskGroup`` nodes for ``withParam`` tasks, ``Retry`` nodes
wrapping the HTTP attempts, ``Skipped`` nodes, RFC 3339 timestamps and ``outputs.result``.
"""

from __future__ import annotations

import itertools
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from workflows.engines.base import WorkflowRun
from workflows.engines.invokers import HttpInvoker, InProcessInvoker, RoutingInvoker
from workflows.engines.local import LocalEngine, compile_workflow


def _ts(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def argo_status(run: WorkflowRun) -> dict[str, Any]:
    nodes: dict[str, dict[str, Any]] = {}
    root = run.name
    ids = {n.name: f"{root}-{i}" for i, n in enumerate(run.nodes)}
    children_of_root = []
    for n in run.nodes:
        nid = ids[n.name]
        base = {
            "id": nid,
            "name": f"{root}.{n.name}",
            "displayName": n.name,
            "templateName": n.template,
            "phase": n.phase,
            "startedAt": _ts(n.started),
            "finishedAt": _ts(n.finished),
        }
        if n.message:
            base["message"] = n.message
        if "(" not in n.name:
            children_of_root.append(nid)
        if n.type == "TaskGroup":
            nodes[nid] = {**base, "type": "TaskGroup", "children": [ids[c] for c in n.children]}
        elif n.type == "HTTP":
            attempts = []
            for k in range(n.attempts):
                aid = f"{nid}-a{k}"
                last = k == n.attempts - 1
                attempt: dict[str, Any] = {
                    "id": aid,
                    "name": f"{root}.{n.name}({k})",
                    "displayName": f"{n.name}({k})",
                    "type": "HTTP",
                    "templateName": n.template,
                    "phase": n.phase if last else "Failed",
                    "startedAt": _ts(n.started),
                    "finishedAt": _ts(n.finished),
                }
                if last and n.result is not None:
                    attempt["outputs"] = {"result": n.result}
                nodes[aid] = attempt
                attempts.append(aid)
            node = {**base, "type": "Retry", "children": attempts}
            if n.result is not None:
                node["outputs"] = {"result": n.result}
            nodes[nid] = node
        else:
            nodes[nid] = {**base, "type": "Skipped"}
    nodes[root] = {
        "id": root,
        "name": root,
        "displayName": root,
        "type": "DAG",
        "templateName": "iteration",
        "phase": run.phase,
        "children": children_of_root,
    }
    return {
        "phase": run.phase,
        "startedAt": _ts(run.started),
        "finishedAt": _ts(run.finished),
        "message": run.message,
        "nodes": nodes,
    }


class FakeArgo:
    def __init__(self, token: str) -> None:
        self.token = token
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

    def _execute(self, name: str, workflow: dict[str, Any]) -> None:
        ref = workflow["spec"]["workflowTemplateRef"]["name"]
        compiled = compile_workflow(workflow, templates={ref: self.templates[ref]})
        params = {p["name"]: p["value"] for p in workflow["spec"]["arguments"]["parameters"]}
        run = LocalEngine(self.invoker, compiled).run(params)
        run.name = name
        with self._lock:
            self.workflows[name]["status"] = argo_status(run)

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
            threading.Thread(target=self.fake._execute, args=(name, wf), daemon=True).start()
            self._reply(200, wf)
        else:
            self._reply(404, {"code": 5, "message": "not found"})

    def do_PUT(self) -> None:
        body = self._record()
        if not self._authorised():
            return
        name = self.path.rstrip("/").rsplit("/", 1)[-1]
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
