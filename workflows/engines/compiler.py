"""Compile an Argo Workflow/WorkflowTemplate dict into the plan the local engine executes.

This module *is* the definition of the Argo subset the local engine supports: a DAG entrypoint whose
tasks call HTTP templates. Everything is validated and pre-parsed once per run (placeholders split into
literal/reference parts, dependency graph ordered, success conditions parsed, retry strategies and
durations parsed), so executing an iteration costs dictionary look-ups and string joins. Anything outside
the subset is refused with :class:`UnsupportedWorkflowError` naming the construct and its path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workflows.engines.expr import Expression, ExpressionError, UnsupportedExpressionError

__all__ = [
    "RETRY_VARIABLES",
    "CompiledWorkflow",
    "HttpTemplate",
    "InvalidWorkflowError",
    "ParamSpec",
    "RetrySpec",
    "Task",
    "Text",
    "UnsupportedWorkflowError",
    "WorkflowSpecError",
    "compile_workflow",
    "parse_duration",
]

API_VERSION = "argoproj.io/v1alpha1"
KINDS = ("Workflow", "WorkflowTemplate", "ClusterWorkflowTemplate")

# Spec fields that only matter to pods or to the cluster's bookkeeping (ttlStrategy: when the controller
# deletes a finished Workflow; the local engine keeps nothing to delete); HTTP steps run without pods.
_IGNORED_SPEC_KEYS = frozenset(
    {
        "serviceAccountName",
        "podGC",
        "ttlStrategy",
        "workflowMetadata",
        "podMetadata",
        "automountServiceAccountToken",
    }
)
# Spec fields the local engine honours besides entrypoint, arguments and templates.
_DEADLINE_KEY = "activeDeadlineSeconds"
_TEMPLATE_TYPES = ("container", "script", "resource", "suspend", "steps", "containerSet", "data", "plugin")
_TASK_UNSUPPORTED = ("withSequence", "continueOn", "onExit", "hooks", "templateRef", "inline")
_TASK_KEYS = frozenset(
    {"name", "template", "depends", "dependencies", "arguments", "withParam", "withItems", "when"}
)
_HTTP_KEYS = frozenset(
    {"url", "method", "headers", "body", "timeoutSeconds", "successCondition", "insecureSkipVerify"}
)
_RETRY_POLICIES = ("Always", "OnFailure", "OnError")
# What Argo binds for retryStrategy.expression (buildRetryStrategyLocalScope in
# workflow/controller/operator.go, v3.5-v4.1.2), all strings.
RETRY_VARIABLES = frozenset(
    {"lastRetry.status", "lastRetry.message", "lastRetry.exitCode", "lastRetry.duration", "retries"}
)
_DEPENDS_TERM = re.compile(r"^([A-Za-z0-9][-A-Za-z0-9]*)(?:\.([A-Za-z]+))?$")
# Plain ``X`` in ``depends`` means X.Succeeded || X.Skipped || X.Daemoned (Argo's expandDependency);
# nothing is ever daemoned here.
_DEPENDS_RESULTS = {
    None: frozenset({"Succeeded", "Skipped"}),
    "Succeeded": frozenset({"Succeeded"}),
    "Skipped": frozenset({"Skipped"}),
}
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_GO_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


class WorkflowSpecError(ValueError):
    """The manifest cannot be run by the local engine."""


class InvalidWorkflowError(WorkflowSpecError):
    """The manifest is malformed (Argo would refuse it too)."""


class UnsupportedWorkflowError(WorkflowSpecError):
    """The manifest is valid Argo but uses a construct outside the local engine's subset."""


def parse_duration(value: str | int, path: str) -> float:
    """Argo's ParseStringToDuration: a bare integer is seconds, otherwise a Go duration ("1s", "1m30s")."""
    if isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    text = str(value).strip()
    if re.fullmatch(r"\d+", text):
        return float(text)
    pos, total = 0, 0.0
    for m in _GO_DURATION.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _GO_UNITS[m.group(2)]
        pos = m.end()
    if pos != len(text) or not text:
        raise InvalidWorkflowError(f"{path}: cannot parse {value!r} as a duration (e.g. '1s', '500ms', '2m')")
    return total


@dataclass(frozen=True, slots=True)
class Text:
    """A string field split on ``{{...}}``: even indexes are literals, odd indexes are variable names."""

    parts: tuple[str, ...]
    source: str

    @property
    def literal(self) -> bool:
        """True when the field has no placeholders."""
        return len(self.parts) == 1

    @property
    def refs(self) -> tuple[str, ...]:
        """The variable names the field uses, in order."""
        return self.parts[1::2]

    def render(self, scopes: tuple[Mapping[str, str], ...]) -> str:
        """Substitute from the first scope holding each name; raise KeyError(name) when none does."""
        parts = self.parts
        if len(parts) == 1:
            return parts[0]
        return self.fill(self.values(scopes))

    def fill(self, values: list[str]) -> str:
        """The field with ``values`` in its placeholders, in order."""
        out = list(self.parts)
        out[1::2] = values
        return "".join(out)

    def values(self, scopes: tuple[Mapping[str, str], ...]) -> list[str]:
        """Each placeholder's value, from the first scope holding its name; KeyError(name) if none does."""
        out: list[str] = []
        for key in self.parts[1::2]:
            for scope in scopes:
                value = scope.get(key)
                if value is not None:
                    out.append(value)
                    break
            else:
                raise KeyError(key)
        return out


@dataclass(frozen=True, slots=True)
class ParamSpec:
    """A declared workflow parameter: its default (None when required) and allowed values."""

    name: str
    value: str | None
    enum: tuple[str, ...] | None


@dataclass(frozen=True, slots=True)
class RetrySpec:
    """A template's ``retryStrategy``, durations in seconds.

    Attributes:
        limit: retries after the first attempt (attempts = limit + 1).
        policy: ``Always``, ``OnFailure`` or ``OnError``.
        duration: the first backoff wait, or None without a ``backoff``.
        factor: each later wait is the previous one times this.
        cap: no wait is longer than this (``backoff.cap``, Argo v3.7+).
        max_duration: no retry starts, nor waits past, this long after the first attempt started.
        expression: ``retryStrategy.expression`` (expr-lang over ``lastRetry.*`` and ``retries``):
            false means no retry.
    """

    limit: int
    policy: str
    duration: float | None
    factor: int | None
    cap: float | None
    max_duration: float | None
    expression: Expression | None = None

    def backoff(self, retry: int) -> float:
        """The wait before retry number ``retry`` (1 = the second attempt), as Argo computes it.

        ``duration * factor ** (retry - 1)``, at most ``cap``; 0 without a backoff.
        """
        if self.duration is None:
            return 0.0
        wait = self.duration
        if self.factor is not None and self.factor > 0:
            wait = self.duration * float(self.factor) ** (retry - 1)
        if self.cap is not None:
            wait = min(wait, self.cap)
        return wait

    @property
    def schedule(self) -> tuple[float, ...]:
        """Every wait, before retries 1..limit, in seconds."""
        return tuple(self.backoff(n) for n in range(1, self.limit + 1))


@dataclass(frozen=True, slots=True)
class HttpTemplate:
    """An HTTP template, its fields pre-split for substitution."""

    name: str
    url: Text
    method: Text
    headers: tuple[tuple[Text, Text], ...]
    body: Text
    timeout: float | None
    success: Expression | None  # pre-parsed when the condition has no placeholders
    success_text: Text | None  # otherwise parsed after substitution
    inputs: tuple[tuple[str, str | None], ...]  # (name, default)
    retry: RetrySpec | None


@dataclass(frozen=True, slots=True)
class Task:
    """A DAG task with its dependencies, arguments and loop, checked against the template it calls."""

    name: str
    template: HttpTemplate
    deps: tuple[tuple[str, frozenset[str]], ...]  # (task, phases that satisfy the dependency)
    args: tuple[tuple[str, Text], ...]
    with_param: Text | None
    with_items: tuple[Any, ...] | None
    when: Text | None
    result_refs: tuple[str, ...]  # tasks whose outputs.result this task reads

    @property
    def expands(self) -> bool:
        """True for a fan-out (``withParam``/``withItems``) task."""
        return self.with_param is not None or self.with_items is not None


@dataclass(frozen=True, slots=True)
class CompiledWorkflow:
    """What the local engine executes: parameters, tasks in topological order, leaves, failFast."""

    name: str
    kind: str
    entrypoint: str
    parameters: tuple[ParamSpec, ...]
    tasks: tuple[Task, ...]  # topological order (ties keep manifest order)
    leaves: tuple[str, ...]  # tasks nobody depends on, sorted (Argo's default DAG targets)
    fail_fast: bool
    # spec.activeDeadlineSeconds: the whole run's time limit, from its start, in seconds.
    active_deadline_s: int | None = None

    def task(self, name: str) -> Task:
        """The task called ``name``; KeyError for anything else."""
        for t in self.tasks:
            if t.name == name:
                return t
        raise KeyError(name)

    @property
    def required_parameters(self) -> tuple[str, ...]:
        """Parameters without a default, which every run must supply."""
        return tuple(p.name for p in self.parameters if p.value is None)


# --- helpers ----------------------------------------------------------------------------------------


def _unsupported(path: str, what: str) -> UnsupportedWorkflowError:
    return UnsupportedWorkflowError(f"{path}: {what} not supported by the local engine")


def _mapping(value: Any, path: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidWorkflowError(f"{path}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, path: str) -> list[Any]:
    if not isinstance(value, list):
        raise InvalidWorkflowError(f"{path}: expected a list, got {type(value).__name__}")
    return value


def _string(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise InvalidWorkflowError(f"{path}: expected a string, got {type(value).__name__}")
    return value


def _check_keys(obj: Mapping[str, Any], allowed: frozenset[str], path: str, what: str) -> None:
    for key in obj:
        if key not in allowed:
            raise _unsupported(f"{path}.{key}", f"{what} key {key!r} is")


class _Vars:
    """Which ``{{...}}`` names a field may use; checked at compile time so typos fail before any call."""

    def __init__(
        self,
        workflow_params: frozenset[str],
        inputs: frozenset[str] = frozenset(),
        tasks: frozenset[str] = frozenset(),
        item: bool = False,
    ) -> None:
        self.workflow_params = workflow_params
        self.inputs = inputs
        self.tasks = tasks
        self.item = item

    def check(self, name: str, path: str) -> None:
        if name.startswith("="):
            raise _unsupported(path, f"expression template '{{{{{name}}}}}' is")
        for prefix, declared, kind in (
            ("workflow.parameters.", self.workflow_params, "workflow"),
            ("inputs.parameters.", self.inputs, "input"),
        ):
            if name.startswith(prefix):
                if name[len(prefix) :] not in declared:
                    raise InvalidWorkflowError(
                        f"{path}: '{{{{{name}}}}}' names an undeclared {kind} parameter "
                        f"(declared: {', '.join(sorted(declared)) or 'none'})"
                    )
                return
        if name == "item" or name.startswith("item."):
            if not self.item:
                raise InvalidWorkflowError(
                    f"{path}: '{{{{{name}}}}}' is used outside a withParam/withItems task"
                )
            return
        m = re.fullmatch(r"tasks\.([^.]+)\.outputs\.result", name)
        if m:
            if m.group(1) not in self.tasks:
                raise InvalidWorkflowError(
                    f"{path}: '{{{{{name}}}}}' refers to {m.group(1)!r}, "
                    "which is not an ancestor of this task"
                )
            return
        raise _unsupported(path, f"variable '{{{{{name}}}}}' is")


def _name_value_items(
    items: Any, path: str, keys: frozenset[str], what: str, value_from: str
) -> list[tuple[Mapping[str, Any], str]]:
    """(item, its path) for a list of name/value mappings (headers, arguments); valueFrom is refused."""
    out = []
    for i, item in enumerate(_list(items or [], path)):
        ipath = f"{path}[{i}]"
        item = _mapping(item, ipath)
        if "valueFrom" in item:
            raise _unsupported(f"{ipath}.valueFrom", value_from)
        _check_keys(item, keys, ipath, what)
        out.append((item, ipath))
    return out


def _text(value: Any, path: str, allowed: _Vars) -> Text:
    source = _string(value, path)
    if "{{" not in source:
        return Text((source,), source)
    pieces = _PLACEHOLDER.split(source)
    for i in range(1, len(pieces), 2):
        pieces[i] = pieces[i].strip()  # fasttemplate trims spaces inside tags
        allowed.check(pieces[i], path)
    for i in range(0, len(pieces), 2):
        if "{{" in pieces[i]:
            raise InvalidWorkflowError(f"{path}: unterminated '{{{{' in {source!r}")
    return Text(tuple(pieces), source)


# --- parameters -------------------------------------------------------------------------------------


def _workflow_params(spec: Mapping[str, Any], path: str) -> tuple[ParamSpec, ...]:
    args = _mapping(spec.get("arguments") or {}, f"{path}.arguments")
    _check_keys(args, frozenset({"parameters"}), f"{path}.arguments", "arguments")
    params: list[ParamSpec] = []
    seen: set[str] = set()
    for i, raw in enumerate(_list(args.get("parameters") or [], f"{path}.arguments.parameters")):
        ppath = f"{path}.arguments.parameters[{i}]"
        p = _mapping(raw, ppath)
        _check_keys(p, frozenset({"name", "value", "description", "enum"}), ppath, "parameter")
        name = _string(p.get("name"), f"{ppath}.name")
        if name in seen:
            raise InvalidWorkflowError(f"{ppath}: duplicate parameter {name!r}")
        seen.add(name)
        value = p.get("value")
        if value is not None and "{{" in str(value):
            raise _unsupported(f"{ppath}.value", "placeholders in workflow parameter values are")
        enum = p.get("enum")
        params.append(
            ParamSpec(
                name,
                None if value is None else str(value),
                None if enum is None else tuple(str(e) for e in enum),
            )
        )
    return tuple(params)


def _override_params(
    params: tuple[ParamSpec, ...], spec: Mapping[str, Any], path: str
) -> tuple[ParamSpec, ...]:
    """A Workflow that references a template supplies values for the template's parameters."""
    given = {p.name: p for p in _workflow_params(spec, path)}
    declared = {p.name for p in params}
    unknown = sorted(set(given) - declared)
    if unknown:
        raise InvalidWorkflowError(
            f"{path}.arguments: parameters not declared by the template: {', '.join(unknown)}"
        )

    def value(p: ParamSpec) -> str | None:
        override = given[p.name].value if p.name in given else None
        return p.value if override is None else override

    return tuple(ParamSpec(p.name, value(p), p.enum) for p in params)


# --- templates --------------------------------------------------------------------------------------


def _retry_expression(raw: Any, path: str) -> Expression:
    """``retryStrategy.expression``: expr-lang over the variables Argo binds (see :data:`RETRY_VARIABLES`)."""
    text = _string(raw, path)
    if "{{" in text:
        raise _unsupported(path, "placeholders in retryStrategy.expression are")
    try:
        expression = Expression(text, dialect="expr")
    except UnsupportedExpressionError as exc:
        raise UnsupportedWorkflowError(
            f"{path}: {exc} by the local engine (its subset: workflows/engines/expr.py)"
        ) from None
    except ExpressionError as exc:
        raise InvalidWorkflowError(f"{path}: {exc}") from None
    unknown = expression.identifiers - RETRY_VARIABLES
    if unknown:
        raise _unsupported(
            path,
            f"identifier(s) {', '.join(sorted(unknown))} (known: {', '.join(sorted(RETRY_VARIABLES))}) are",
        )
    return expression


def _retry(raw: Any, path: str) -> RetrySpec:
    r = _mapping(raw, path)
    if "affinity" in r:
        raise _unsupported(f"{path}.affinity", "retryStrategy.affinity is")
    _check_keys(r, frozenset({"limit", "retryPolicy", "backoff", "expression"}), path, "retryStrategy")
    if "limit" not in r:
        raise _unsupported(path, "a retryStrategy without 'limit' (Argo would retry forever) is")
    try:
        limit = int(str(r["limit"]).strip())
    except ValueError:
        raise _unsupported(f"{path}.limit", f"a non-integer limit {r['limit']!r} is") from None
    policy = r.get("retryPolicy") or "OnFailure"  # Argo's default policy
    if policy not in _RETRY_POLICIES:
        raise _unsupported(f"{path}.retryPolicy", f"retryPolicy {policy!r} is")
    duration = factor = cap = max_duration = None
    if "backoff" in r:
        bpath = f"{path}.backoff"
        b = _mapping(r["backoff"], bpath)
        _check_keys(b, frozenset({"duration", "factor", "cap", "maxDuration"}), bpath, "backoff")
        if "duration" not in b:
            raise InvalidWorkflowError(f"{bpath}: no base duration specified for retryStrategy")
        duration = parse_duration(b["duration"], f"{bpath}.duration")
        if b.get("factor") is not None:
            try:
                factor = int(str(b["factor"]).strip())
            except ValueError:
                raise InvalidWorkflowError(f"{bpath}.factor: {b['factor']!r} is not an integer") from None
        if b.get("cap") is not None:
            cap = parse_duration(b["cap"], f"{bpath}.cap")
        if b.get("maxDuration") is not None:
            max_duration = parse_duration(b["maxDuration"], f"{bpath}.maxDuration")
    expression = _retry_expression(r["expression"], f"{path}.expression") if r.get("expression") else None
    return RetrySpec(limit, policy, duration, factor, cap, max_duration, expression)


def _inputs(tmpl: Mapping[str, Any], path: str) -> tuple[tuple[str, str | None], ...]:
    raw = _mapping(tmpl.get("inputs") or {}, f"{path}.inputs")
    if raw.get("artifacts"):
        raise _unsupported(f"{path}.inputs.artifacts", "input artifacts are")
    _check_keys(raw, frozenset({"parameters", "artifacts"}), f"{path}.inputs", "inputs")
    out: list[tuple[str, str | None]] = []
    for i, p in enumerate(_list(raw.get("parameters") or [], f"{path}.inputs.parameters")):
        ppath = f"{path}.inputs.parameters[{i}]"
        p = _mapping(p, ppath)
        if "value" in p or "valueFrom" in p:
            raise _unsupported(ppath, "fixed input values ('value'/'valueFrom') are")
        _check_keys(p, frozenset({"name", "default", "description"}), ppath, "input parameter")
        default = p.get("default")
        out.append((_string(p.get("name"), f"{ppath}.name"), None if default is None else str(default)))
    return tuple(out)


def _http_template(tmpl: Mapping[str, Any], path: str, wf_params: frozenset[str]) -> HttpTemplate:
    name = _string(tmpl.get("name"), f"{path}.name")
    inputs = _inputs(tmpl, path)
    allowed = _Vars(wf_params, inputs=frozenset(n for n, _ in inputs))
    hpath = f"{path}.http"
    http = _mapping(tmpl["http"], hpath)
    if "bodyFrom" in http:
        raise _unsupported(f"{hpath}.bodyFrom", "bodyFrom is")
    if http.get("insecureSkipVerify"):
        raise _unsupported(f"{hpath}.insecureSkipVerify", "skipping TLS verification is")
    _check_keys(http, _HTTP_KEYS, hpath, "http")
    if "url" not in http:
        raise InvalidWorkflowError(f"{hpath}: url is required")
    headers = [
        (_text(h.get("name"), f"{hp}.name", allowed), _text(h.get("value", ""), f"{hp}.value", allowed))
        for h, hp in _name_value_items(
            http.get("headers"),
            f"{hpath}.headers",
            frozenset({"name", "value"}),
            "header",
            "header valueFrom (secrets) is",
        )
    ]
    timeout = http.get("timeoutSeconds")
    if timeout is not None and (isinstance(timeout, bool) or not isinstance(timeout, int) or timeout <= 0):
        raise InvalidWorkflowError(f"{hpath}.timeoutSeconds: expected a positive integer, got {timeout!r}")
    success = success_text = None
    if http.get("successCondition"):
        cond = _text(http["successCondition"], f"{hpath}.successCondition", allowed)
        if cond.literal:
            try:
                success = Expression(cond.source)
            except ExpressionError as exc:
                raise InvalidWorkflowError(f"{hpath}.successCondition: {exc}") from None
            unknown = success.identifiers - {"response.statusCode", "response.body"}
            if unknown:
                raise _unsupported(
                    f"{hpath}.successCondition", f"identifier(s) {', '.join(sorted(unknown))} are"
                )
        else:
            success_text = cond
    retry = _retry(tmpl["retryStrategy"], f"{path}.retryStrategy") if tmpl.get("retryStrategy") else None
    return HttpTemplate(
        name=name,
        url=_text(http["url"], f"{hpath}.url", allowed),
        method=_text(http.get("method") or "GET", f"{hpath}.method", allowed),  # Go's "" method is GET
        headers=tuple(headers),
        body=_text(http.get("body", ""), f"{hpath}.body", allowed),
        timeout=None if timeout is None else float(timeout),
        success=success,
        success_text=success_text,
        inputs=inputs,
        retry=retry,
    )


def _template_kind(tmpl: Mapping[str, Any], path: str) -> str:
    for kind in _TEMPLATE_TYPES:
        if kind in tmpl:
            raise _unsupported(f"{path}.{kind}", f"{kind} templates are")
    kinds = [k for k in ("dag", "http") if k in tmpl]
    if len(kinds) != 1:
        raise InvalidWorkflowError(
            f"{path}: a template needs exactly one of dag/http, found {kinds or 'none'}"
        )
    allowed = {"name", "metadata", "inputs", "outputs", kinds[0]}
    if kinds[0] == "http":
        allowed.add("retryStrategy")  # a retried DAG is a construct of its own; we only retry calls
    for key in tmpl:
        if key not in allowed:
            raise _unsupported(f"{path}.{key}", f"template key {key!r} is")
    if tmpl.get("outputs"):
        raise _unsupported(f"{path}.outputs", "declared outputs are (only outputs.result is available)")
    return kinds[0]


# --- the DAG ----------------------------------------------------------------------------------------


def _depends(task: Mapping[str, Any], path: str) -> list[tuple[str, frozenset[str]]]:
    if "depends" in task and "dependencies" in task:
        raise InvalidWorkflowError(f"{path}: cannot use both 'depends' and 'dependencies'")
    if "dependencies" in task:
        names = _list(task["dependencies"], f"{path}.dependencies")
        return [(_string(n, f"{path}.dependencies"), _DEPENDS_RESULTS[None]) for n in names]
    text = task.get("depends")
    if not text:
        return []
    text = _string(text, f"{path}.depends")
    if "||" in text or "!" in text or "(" in text:
        raise _unsupported(f"{path}.depends", f"'||', '!' and parentheses in depends ({text!r}) are")
    deps = []
    for term in text.split("&&"):
        m = _DEPENDS_TERM.fullmatch(term.strip())
        if not m:
            raise InvalidWorkflowError(f"{path}.depends: cannot parse {term.strip()!r} in {text!r}")
        result = m.group(2)
        if result not in _DEPENDS_RESULTS:
            raise _unsupported(
                f"{path}.depends", f"task result '{result}' (only plain names, .Succeeded, .Skipped) is"
            )
        deps.append((m.group(1), _DEPENDS_RESULTS[result]))
    return deps


def _topological(names: list[str], deps: dict[str, list[str]], path: str) -> list[str]:
    order: list[str] = []
    state: dict[str, int] = {}  # 1 visiting, 2 done

    def visit(n: str, trail: list[str]) -> None:
        if state.get(n) == 2:
            return
        if state.get(n) == 1:
            raise InvalidWorkflowError(f"{path}: dependency cycle {' -> '.join([*trail, n])}")
        state[n] = 1
        for d in deps[n]:
            visit(d, [*trail, n])
        state[n] = 2
        order.append(n)

    for n in names:
        visit(n, [])
    return order


_Entries = dict[str, tuple[str, Mapping[str, Any]]]  # task name -> (its path, the raw task)
_Deps = dict[str, list[tuple[str, frozenset[str]]]]  # task name -> (dependency, phases that satisfy it)


def _dag_entries(raw_tasks: list[Any], dpath: str) -> tuple[_Entries, _Deps]:
    """Each task's (path, raw mapping) and dependencies, by name; names and dependencies checked."""
    specs: _Entries = {}
    deps: _Deps = {}
    for i, raw in enumerate(raw_tasks):
        tpath = f"{dpath}.tasks[{i}]"
        t = _mapping(raw, tpath)
        for key in _TASK_UNSUPPORTED:
            if key in t:
                raise _unsupported(f"{tpath}.{key}", f"{key} is")
        _check_keys(t, _TASK_KEYS, tpath, "task")
        name = _string(t.get("name"), f"{tpath}.name")
        if name in specs:
            raise InvalidWorkflowError(f"{tpath}: duplicate task name {name!r}")
        specs[name] = (tpath, t)
        deps[name] = _depends(t, tpath)
    for name, (tpath, _) in specs.items():
        for d, _ok in deps[name]:
            if d not in specs:
                raise InvalidWorkflowError(f"{tpath}: depends on unknown task {d!r}")
    return specs, deps


def _called_template(
    t: Mapping[str, Any], tpath: str, http: Mapping[str, HttpTemplate], template_kinds: Mapping[str, str]
) -> HttpTemplate:
    tmpl_name = _string(t.get("template"), f"{tpath}.template")
    if tmpl_name not in template_kinds:
        raise InvalidWorkflowError(f"{tpath}.template: no template named {tmpl_name!r}")
    if template_kinds[tmpl_name] != "http":
        raise _unsupported(
            f"{tpath}.template",
            f"calling the {template_kinds[tmpl_name]} template {tmpl_name!r} "
            "(only HTTP templates may be called from a task) is",
        )
    return http[tmpl_name]


def _loop_items(
    t: Mapping[str, Any], tpath: str, allowed: _Vars
) -> tuple[Text | None, tuple[Any, ...] | None]:
    """(withParam, withItems) of a task; at most one of them is set."""
    if "withParam" in t and "withItems" in t:
        raise InvalidWorkflowError(f"{tpath}: cannot use both withParam and withItems")
    with_param = _text(t["withParam"], f"{tpath}.withParam", allowed) if "withParam" in t else None
    with_items = None
    if "withItems" in t:
        items = _list(t["withItems"], f"{tpath}.withItems")
        if any("{{" in str(item) for item in items):
            raise _unsupported(f"{tpath}.withItems", "placeholders inside withItems are")
        with_items = tuple(items)
    return with_param, with_items


def _task_args(
    t: Mapping[str, Any], tpath: str, target: HttpTemplate, allowed: _Vars
) -> list[tuple[str, Text]]:
    """The task's arguments, checked against the inputs the called template declares."""
    args_raw = _mapping(t.get("arguments") or {}, f"{tpath}.arguments")
    if args_raw.get("artifacts"):
        raise _unsupported(f"{tpath}.arguments.artifacts", "artifacts are")
    _check_keys(args_raw, frozenset({"parameters", "artifacts"}), f"{tpath}.arguments", "arguments")
    items = _name_value_items(
        args_raw.get("parameters"),
        f"{tpath}.arguments.parameters",
        frozenset({"name", "value", "description"}),
        "argument",
        "valueFrom is",
    )
    args = [
        (_string(p.get("name"), f"{ppath}.name"), _text(str(p.get("value", "")), f"{ppath}.value", allowed))
        for p, ppath in items
    ]
    given = {n for n, _ in args}
    declared = {n for n, _ in target.inputs}
    if given - declared:
        raise InvalidWorkflowError(
            f"{tpath}.arguments: {', '.join(sorted(given - declared))} not declared "
            f"as inputs of template {target.name!r}"
        )
    missing = sorted(n for n, default in target.inputs if default is None and n not in given)
    if missing:
        raise InvalidWorkflowError(f"{tpath}.arguments: template {target.name!r} needs {', '.join(missing)}")
    return args


def _task(
    name: str,
    tpath: str,
    t: Mapping[str, Any],
    deps: list[tuple[str, frozenset[str]]],
    ancestors: frozenset[str],
    http: Mapping[str, HttpTemplate],
    template_kinds: Mapping[str, str],
    wf_params: frozenset[str],
) -> Task:
    target = _called_template(t, tpath, http, template_kinds)
    with_param, with_items = _loop_items(t, tpath, _Vars(wf_params, tasks=ancestors))
    allowed = _Vars(wf_params, tasks=ancestors, item=with_param is not None or with_items is not None)
    args = _task_args(t, tpath, target, allowed)
    when = _text(t["when"], f"{tpath}.when", allowed) if t.get("when") else None
    texts = [tx for _, tx in args] + [x for x in (with_param, when) if x is not None]
    refs = {r.split(".")[1] for tx in texts for r in tx.refs if r.startswith("tasks.")}
    return Task(name, target, tuple(deps), tuple(args), with_param, with_items, when, tuple(sorted(refs)))


def _dag(
    tmpl: Mapping[str, Any],
    path: str,
    http: dict[str, HttpTemplate],
    template_kinds: dict[str, str],
    wf_params: frozenset[str],
) -> tuple[list[Task], bool]:
    if tmpl.get("inputs"):
        raise _unsupported(f"{path}.inputs", "inputs on the DAG template are")
    dpath = f"{path}.dag"
    dag = _mapping(tmpl["dag"], dpath)
    if "target" in dag:
        raise _unsupported(f"{dpath}.target", "dag.target is")
    _check_keys(dag, frozenset({"tasks", "failFast"}), dpath, "dag")
    raw_tasks = _list(dag.get("tasks") or [], f"{dpath}.tasks")
    if not raw_tasks:
        raise InvalidWorkflowError(f"{dpath}.tasks: a DAG needs at least one task")
    specs, deps = _dag_entries(raw_tasks, dpath)
    order = _topological(list(specs), {n: [d for d, _ in ds] for n, ds in deps.items()}, dpath)
    ancestors: dict[str, frozenset[str]] = {}
    for n in order:
        acc: set[str] = set()
        for d, _ in deps[n]:
            acc |= {d} | ancestors[d]
        ancestors[n] = frozenset(acc)
    tasks = [
        _task(name, *specs[name], deps[name], ancestors[name], http, template_kinds, wf_params)
        for name in order
    ]
    fail_fast = dag.get("failFast")
    return tasks, True if fail_fast is None else bool(fail_fast)


def _active_deadline(spec: Mapping[str, Any], path: str) -> int | None:
    """``spec.activeDeadlineSeconds``: a whole number of seconds (the schema's integer), or None."""
    if _DEADLINE_KEY not in spec:
        return None
    value = spec[_DEADLINE_KEY]
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InvalidWorkflowError(
            f"{path}.{_DEADLINE_KEY}: expected a whole number of seconds, got {value!r}"
        )
    if value == 0:
        # On a cluster 0 means "stop this running Workflow now"; a run that starts stopped is no run.
        raise _unsupported(f"{path}.{_DEADLINE_KEY}", f"{_DEADLINE_KEY}: 0 (terminate) is")
    return value


def _spec_templates(
    spec: Mapping[str, Any], path: str, wf_params: frozenset[str]
) -> tuple[str, list[Task], bool]:
    for key in spec:
        if key not in {"entrypoint", "arguments", "templates", _DEADLINE_KEY} | _IGNORED_SPEC_KEYS:
            raise _unsupported(f"{path}.{key}", f"spec key {key!r} is")
    entry = _string(spec.get("entrypoint"), f"{path}.entrypoint")
    raw = _list(spec.get("templates"), f"{path}.templates")
    kinds: dict[str, str] = {}
    for i, t in enumerate(raw):
        tpath = f"{path}.templates[{i}]"
        t = _mapping(t, tpath)
        name = _string(t.get("name"), f"{tpath}.name")
        if name in kinds:
            raise InvalidWorkflowError(f"{tpath}: duplicate template name {name!r}")
        kinds[name] = _template_kind(t, tpath)
    http = {
        t["name"]: _http_template(t, f"{path}.templates[{i}]", wf_params)
        for i, t in enumerate(raw)
        if kinds[t["name"]] == "http"
    }
    if entry not in kinds:
        raise InvalidWorkflowError(f"{path}.entrypoint: no template named {entry!r}")
    index = next(i for i, t in enumerate(raw) if t["name"] == entry)
    if kinds[entry] != "dag":
        raise _unsupported(f"{path}.templates[{index}]", "an entrypoint that is not a DAG is")
    tasks, fail_fast = _dag(raw[index], f"{path}.templates[{index}]", http, kinds, wf_params)
    return entry, tasks, fail_fast


def compile_workflow(
    manifest: Mapping[str, Any], templates: Mapping[str, Mapping[str, Any]] | None = None
) -> CompiledWorkflow:
    """Validate and pre-parse a Workflow / WorkflowTemplate dict (``to_dict()`` of a Hera object).

    A Workflow that uses ``spec.workflowTemplateRef`` is resolved against ``templates`` (template name ->
    WorkflowTemplate dict); its ``spec.arguments`` become the parameters' values.
    """
    m = _mapping(manifest, "manifest")
    if m.get("apiVersion") != API_VERSION:
        raise InvalidWorkflowError(f"apiVersion: expected {API_VERSION!r}, got {m.get('apiVersion')!r}")
    kind = m.get("kind")
    if kind not in KINDS:
        raise UnsupportedWorkflowError(
            f"kind: {kind!r} is not supported by the local engine (use one of {KINDS})"
        )
    meta = _mapping(m.get("metadata") or {}, "metadata")
    name = str(meta.get("name") or meta.get("generateName") or kind)
    spec = _mapping(m.get("spec"), "spec")

    if "workflowTemplateRef" in spec:
        ref = _mapping(spec["workflowTemplateRef"], "spec.workflowTemplateRef")
        if ref.get("clusterScope"):
            raise _unsupported("spec.workflowTemplateRef.clusterScope", "clusterScope is")
        _check_keys(
            ref, frozenset({"name", "clusterScope"}), "spec.workflowTemplateRef", "workflowTemplateRef"
        )
        for key in spec:
            if key not in {"workflowTemplateRef", "arguments", _DEADLINE_KEY} | _IGNORED_SPEC_KEYS:
                raise _unsupported(f"spec.{key}", f"spec key {key!r} next to workflowTemplateRef is")
        ref_name = _string(ref.get("name"), "spec.workflowTemplateRef.name")
        if not templates or ref_name not in templates:
            raise InvalidWorkflowError(
                f"spec.workflowTemplateRef: template {ref_name!r} not given; "
                "pass templates={name: manifest} or compile the WorkflowTemplate itself"
            )
        base = compile_workflow(templates[ref_name])
        # Argo merges the template's spec under the Workflow's: a deadline on the Workflow wins.
        deadline = _active_deadline(spec, "spec")
        return CompiledWorkflow(
            name,
            kind,
            base.entrypoint,
            _override_params(base.parameters, spec, "spec"),
            base.tasks,
            base.leaves,
            base.fail_fast,
            base.active_deadline_s if deadline is None else deadline,
        )

    params = _workflow_params(spec, "spec")
    entry, tasks, fail_fast = _spec_templates(spec, "spec", frozenset(p.name for p in params))
    depended = {d for t in tasks for d, _ in t.deps}
    leaves = tuple(sorted(t.name for t in tasks if t.name not in depended))
    return CompiledWorkflow(
        name, kind, entry, params, tuple(tasks), leaves, fail_fast, _active_deadline(spec, "spec")
    )
