"""Run a chaining Workflow on the embedded engine: its ``templateRef`` DAG calls inlined into one DAG.

A chain (:func:`workflows.iteration_chain.chain_workflow`) is a DAG whose tasks each call a DAG template
of a WorkflowTemplate through ``templateRef``, passing literal inputs. The compiler's subset is one DAG
of HTTP steps, so the chain is inlined first, as Argo would run it:

- the called DAG's task ``T`` of call ``C`` becomes the task ``C--T`` (``--`` cannot start or end an Argo
  task name's words, so the split is unambiguous);
- ``{{inputs.parameters.X}}`` of the called DAG becomes the call's literal argument, and
  ``{{tasks.T.outputs.result}}`` / ``depends: T`` name ``C--T``;
- a call that depends on call ``B`` starts when every leaf of ``B`` is done: its first tasks depend on
  ``B``'s leaves with plain ``depends`` (Succeeded or Skipped, as a DAG node whose skipped leaf is still
  Succeeded).

The HTTP step templates are taken as they are. The run's node ``C--collect(0:0)`` is the node
``collect(0:0)`` inside the DAG node ``C`` on a cluster (see :func:`split_node_name`).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Any

from workflows.engines.compiler import InvalidWorkflowError, UnsupportedWorkflowError

SEPARATOR = "--"
# Workflow spec fields a chaining Workflow may carry: they bound or describe the whole run.
_PASSED_SPEC_KEYS = ("arguments", "activeDeadlineSeconds", "serviceAccountName", "ttlStrategy")
_INPUT_REF = re.compile(r"\{\{\s*inputs\.parameters\.([^}\s]+)\s*\}\}")
_RESULT_REF = re.compile(r"\{\{\s*tasks\.([^.}\s]+)\.outputs\.result\s*\}\}")


def is_chain(workflow: Mapping[str, Any]) -> bool:
    """True for a Workflow whose entrypoint DAG calls templates of WorkflowTemplates (``templateRef``)."""
    spec = workflow.get("spec") or {}
    entry = spec.get("entrypoint")
    for tmpl in spec.get("templates") or []:
        if tmpl.get("name") == entry and "dag" in tmpl:
            return any("templateRef" in t for t in tmpl["dag"].get("tasks") or [])
    return False


def split_node_name(name: str) -> tuple[str | None, str]:
    """``C--collect(0:0)`` -> (``C``, ``collect(0:0)``); a name outside any call -> (None, name)."""
    call, sep, inner = name.partition(SEPARATOR)
    return (call, inner) if sep else (None, name)


def _depends_terms(text: str | None, path: str) -> list[str]:
    if not text:
        return []
    terms = [t.strip() for t in text.split("&&")]
    for term in terms:
        if not re.fullmatch(r"[A-Za-z0-9][-A-Za-z0-9]*(\.[A-Za-z]+)?", term):
            raise UnsupportedWorkflowError(
                f"{path}.depends: only names joined by '&&' are inlined, got {text!r}"
            )
    return terms


def _leaves(tasks: list[Mapping[str, Any]], path: str) -> list[str]:
    depended = {
        term.split(".")[0] for t in tasks for term in _depends_terms(t.get("depends"), f"{path}.{t['name']}")
    }
    return [t["name"] for t in tasks if t["name"] not in depended]


def _substitute(value: Any, call: str, inputs: Mapping[str, str], path: str) -> Any:
    """A called DAG's field with its inputs and task references resolved for call ``call``."""
    if isinstance(value, list):
        return [_substitute(v, call, inputs, path) for v in value]
    if isinstance(value, dict):
        return {k: _substitute(v, call, inputs, f"{path}.{k}") for k, v in value.items()}
    if not isinstance(value, str):
        return value

    def given(m: re.Match[str]) -> str:
        if m.group(1) not in inputs:
            raise InvalidWorkflowError(f"{path}: input {m.group(1)!r} is not passed by call {call!r}")
        return inputs[m.group(1)]

    text = _INPUT_REF.sub(given, value)
    return _RESULT_REF.sub(lambda m: f"{{{{tasks.{call}{SEPARATOR}{m.group(1)}.outputs.result}}}}", text)


def _called_dag(
    task: Mapping[str, Any], path: str, templates: Mapping[str, Mapping[str, Any]]
) -> tuple[str, Mapping[str, Any], Mapping[str, Any]]:
    """(WorkflowTemplate name, its manifest, the called DAG template) of one chain task."""
    ref = task.get("templateRef")
    if not isinstance(ref, Mapping) or "template" in task:
        raise UnsupportedWorkflowError(f"{path}: a chain's task must call a template through templateRef")
    if ref.get("clusterScope"):
        raise UnsupportedWorkflowError(f"{path}.templateRef.clusterScope: clusterScope is not supported")
    wt_name, tmpl_name = ref.get("name"), ref.get("template")
    if not isinstance(wt_name, str) or wt_name not in templates:
        raise InvalidWorkflowError(f"{path}.templateRef: WorkflowTemplate {wt_name!r} not given")
    wt = templates[wt_name]
    found = [t for t in wt["spec"].get("templates") or [] if t.get("name") == tmpl_name]
    if not found or "dag" not in found[0]:
        raise UnsupportedWorkflowError(f"{path}.templateRef: {wt_name}/{tmpl_name} is not a DAG template")
    return wt_name, wt, found[0]


def _call_inputs(task: Mapping[str, Any], dag: Mapping[str, Any], path: str) -> dict[str, str]:
    given = {
        p["name"]: str(p.get("value", "")) for p in (task.get("arguments") or {}).get("parameters") or []
    }
    if any("{{" in v for v in given.values()):
        raise UnsupportedWorkflowError(f"{path}.arguments: a chain passes literal values only")
    declared = [p["name"] for p in (dag.get("inputs") or {}).get("parameters") or []]
    missing = sorted(set(declared) - set(given))
    if missing:
        raise InvalidWorkflowError(f"{path}.arguments: {', '.join(missing)} not passed")
    return given


def _inline_call(
    task: Mapping[str, Any], path: str, dag: Mapping[str, Any], after: list[str]
) -> tuple[list[dict[str, Any]], list[str]]:
    """The called DAG's tasks renamed for this call, and the call's leaves (renamed)."""
    call = str(task["name"])
    inputs = _call_inputs(task, dag, path)
    inner = list(dag["dag"].get("tasks") or [])
    out = []
    for t in inner:
        tpath = f"{path}/{t['name']}"
        flat = {k: _substitute(v, call, inputs, f"{tpath}.{k}") for k, v in t.items() if k != "depends"}
        flat["name"] = f"{call}{SEPARATOR}{t['name']}"
        terms = [f"{call}{SEPARATOR}{term}" for term in _depends_terms(t.get("depends"), tpath)]
        if terms or after:
            flat["depends"] = " && ".join(terms or after)
        out.append(flat)
    return out, [f"{call}{SEPARATOR}{leaf}" for leaf in _leaves(inner, path)]


def expand_chain(workflow: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """The chaining Workflow as one flat DAG of HTTP steps, which the compiler accepts.

    Args:
        workflow: the chaining Workflow (a DAG entrypoint whose tasks call DAG templates by
            ``templateRef``, with literal arguments).
        templates: WorkflowTemplate name -> manifest, for every template the chain calls.

    Raises:
        UnsupportedWorkflowError: a construct outside what a chain uses (a task without templateRef, a
            called template that is not a DAG, placeholders in a call's arguments, ``||`` in depends).
        InvalidWorkflowError: a WorkflowTemplate not given, an input not passed, two called templates
            defining one step differently.
    """
    spec = workflow["spec"]
    entry = spec.get("entrypoint")
    outer = next((t for t in spec.get("templates") or [] if t.get("name") == entry and "dag" in t), None)
    if outer is None:
        raise UnsupportedWorkflowError(f"spec.entrypoint: {entry!r} is not a DAG of this Workflow")
    steps: dict[str, Mapping[str, Any]] = {}
    tasks: list[dict[str, Any]] = []
    leaves: dict[str, list[str]] = {}
    for i, task in enumerate(outer["dag"].get("tasks") or []):
        path = f"spec.templates[{entry}].dag.tasks[{i}]"
        wt_name, wt, dag = _called_dag(task, path, templates)
        for tmpl in wt["spec"].get("templates") or []:
            if "dag" in tmpl:
                continue
            if tmpl["name"] in steps and steps[tmpl["name"]] != tmpl:
                raise InvalidWorkflowError(f"{path}: template {tmpl['name']!r} of {wt_name!r} clashes")
            steps[tmpl["name"]] = tmpl
        deps = [term.split(".")[0] for term in _depends_terms(task.get("depends"), path)]
        unknown = [d for d in deps if d not in leaves]
        if unknown:
            raise InvalidWorkflowError(f"{path}.depends: {unknown[0]!r} is not an earlier task")
        after = [leaf for dep in deps for leaf in leaves[dep]]
        flat, leaves[str(task["name"])] = _inline_call(task, path, dag, after)
        tasks.extend(flat)
    flat_spec: dict[str, Any] = {k: copy.deepcopy(spec[k]) for k in _PASSED_SPEC_KEYS if k in spec}
    flat_spec["entrypoint"] = entry
    flat_spec["templates"] = [copy.deepcopy(dict(t)) for t in steps.values()] + [
        {"name": entry, "dag": {"tasks": tasks}}
    ]
    return {
        "apiVersion": workflow["apiVersion"],
        "kind": workflow["kind"],
        "metadata": copy.deepcopy(dict(workflow.get("metadata") or {})),
        "spec": flat_spec,
    }
