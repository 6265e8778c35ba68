"""Hostile input: fuzzed request bodies through every function, in this process and over HTTP.

    python -c "from benchmarks.reliability.fuzz import run; [print(c) for c in run()]"

Two halves, each against a real small run (config, run record, version 1 committed, iteration 0's
shards, batch and eval in the store) so that bodies reach the functions' deep validation:

* **in-process** (``10,000 * scale`` bodies): each body goes to one function's ``handle()``, cycling
  through all four. Required: no exception escapes ``handle()``, no answer is 500 or more, and every
  answer's body is strict JSON (an object with ``error`` for 4xx).
* **over HTTP** (``2,000 * scale`` requests) through the gateway started as a real process
  (``python -m workflows.gateway.server --port 0 --read-timeout 1``): fuzzed bodies POSTed on one
  keep-alive connection, and raw-socket requests with hostile framing (bad, negative, huge, missing or
  duplicated Content-Length, bodies shorter than declared, chunked bodies good and bad, odd methods,
  garbage request lines, oversized heads, other HTTP versions). Required: every request is answered
  below 500 with a JSON error body (505 is accepted for a request naming HTTP/2 or later, as HTTP
  requires), and no connection is dropped unanswered or hangs; a request that never completes its
  request line may be closed unanswered, after the gateway's read timeout.

Bodies are drawn by hypothesis with a fixed seed, so a run is repeatable. The categories of bodies:
random JSON, deep nesting (1,000-100,000 levels) inside otherwise valid bodies, wrong types, huge
numbers, NaN/Infinity literals, invalid UTF-8, huge strings (up to past the 8 MiB limit), and
valid-looking bodies with hostile values (iteration 999999, forged keys, versions not committed yet,
negative counts, other runs). A last check lists the store: no object may exist for an iteration the
run cannot be at.
"""

from __future__ import annotations

import concurrent.futures as cf
import http.client
import importlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from benchmarks.reliability.checks import Check
from benchmarks.reliability.procs import environment, stop_process
from ftg_common import catalog, faas, layout, runtime
from ftg_common.config import PPOConfig, RunConfig

AREA = "hostile input"
RUN_ID = "fuzz-run"
FUNCTIONS: tuple[str, ...] = catalog.FUNCTION_NAMES
REPO = Path(__file__).resolve().parents[2]
GATEWAY_READ_TIMEOUT_S = 1.0
_RAW = "@@raw-token@@"  # placeholder replaced by a literal that json.dumps cannot write
_MAX_SHOWN = 160
CATEGORIES = (
    "random JSON",
    "deep nesting",
    "wrong types",
    "huge numbers",
    "NaN/Infinity literals",
    "invalid UTF-8",
    "huge strings",
    "hostile values",
)


# --------------------------------------------------------------------------- the run the bodies aim at


@dataclass(frozen=True)
class Target:
    """A real small run and one valid request body per function.

    Attributes:
        cfg: the run's frozen config.
        valid: function name -> a body it answers 200 (iteration 0, or 1 for the collector).
    """

    cfg: RunConfig
    valid: dict[str, dict[str, Any]]

    @property
    def n_iterations(self) -> int:
        """Iterations of the run."""
        return self.cfg.ppo.n_iterations


def _ok(function: str, body: dict[str, Any]) -> dict[str, Any]:
    resp = faas.call(function, json.dumps(body).encode())
    if resp.status != 200:
        raise RuntimeError(f"setting up the fuzz target: {function} answered {resp.status}: {resp.body}")
    out: dict[str, Any] = resp.json()
    return out


def make_target(run_id: str = RUN_ID) -> Target:
    """Create run ``run_id`` in the configured stores and carry it through iteration 0.

    The settings (``FTG_STORE_URL``, ``FTG_META_URL``) must already point at scratch stores.
    """
    ppo = PPOConfig(n_envs=2, n_steps=8, shards=2, batch_size=8, n_epochs=1, total_steps=64, eval_episodes=2)
    cfg = RunConfig(run_id=run_id, seed=0, ppo=ppo)
    runtime.store().put_json(layout.config_key(run_id), cfg.to_stored())
    runtime.meta().create_run(run_id)
    ref = {"run_id": run_id, "iteration": 0, "config_digest": cfg.digest()}
    _ok("policy-updater", {**ref, "mode": "init"})
    shards = [_ok("rollout-collector", {**ref, "shard": s}) for s in range(ppo.shards)]
    batch = _ok("reward-aggregator", {**ref, "shards": shards})
    _ok("policy-updater", {**ref, "batch": batch})
    _ok("policy-evaluator", ref)
    valid = {
        "rollout-collector": {**ref, "iteration": 1, "shard": 0},
        "reward-aggregator": {**ref, "shards": shards},
        "policy-updater": {**ref, "batch": batch},
        "policy-evaluator": dict(ref),
    }
    return Target(cfg, valid)


@contextmanager
def scratch_stores(root: Path) -> Iterator[None]:
    """Point this process's settings (and the gateway it starts) at stores under ``root``; restore after."""
    with environment({"FTG_STORE_URL": f"file://{root}/store", "FTG_META_URL": f"sqlite:///{root}/meta.db"}):
        yield


# --------------------------------------------------------------------------- bodies


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path into ``obj`` (dict keys and list indices), containers included."""
    out: list[tuple[Any, ...]] = []
    items = obj.items() if isinstance(obj, dict) else enumerate(obj) if isinstance(obj, list) else ()
    for key, value in items:
        out.append((*prefix, key))
        out.extend(_paths(value, (*prefix, key)))
    return out


def _with(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of ``body`` with ``value`` at ``path`` (the last key is added if missing)."""
    out: dict[str, Any] = json.loads(json.dumps(body))
    node: Any = out
    for key in path[:-1]:
        node = node[key]
    if isinstance(node, list) and path[-1] >= len(node):
        node.append(value)
    else:
        node[path[-1]] = value
    return out


def _raw(body: dict[str, Any], path: tuple[Any, ...], token: bytes) -> bytes:
    """``body`` as JSON with the literal ``token`` (not necessarily JSON) at ``path``."""
    return json.dumps(_with(body, path, _RAW)).encode().replace(json.dumps(_RAW).encode(), token, 1)


# Keys a function's body does not hold yet but may: its optional fields and one it refuses.
_NEW_KEYS = {
    "rollout-collector": ("zz",),
    "reward-aggregator": ("zz",),
    "policy-updater": ("mode", "zz"),
    "policy-evaluator": ("version", "episodes", "zz"),
}
_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=24)
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@dataclass(frozen=True)
class Body:
    """One fuzzed request: the function it goes to, its bytes, and what was done to it."""

    function: str
    data: bytes
    label: str


def body_strategy(target: Target, category: str) -> st.SearchStrategy[Body]:  # noqa: C901 - a menu
    """Bodies of ``category`` (one of :data:`CATEGORIES`) aimed at ``target``'s run."""

    @st.composite
    def draw_body(draw: st.DrawFn) -> Body:
        function = draw(st.sampled_from(FUNCTIONS))
        valid = target.valid[function]
        paths = _paths(valid) + [(k,) for k in _NEW_KEYS[function]]
        path = draw(st.sampled_from(paths))
        where = ".".join(map(str, path))
        if category == "random JSON":
            value = draw(json_values)
            return Body(function, json.dumps(value).encode(), f"random {type(value).__name__}")
        if category == "deep nesting":
            depth = draw(st.integers(1_000, 100_000))
            opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}"), (b'[{"k":', b"}]")]))
            closed = draw(st.booleans())
            token = opener * depth + b"1" + (closer * depth if closed else b"")
            if draw(st.booleans()):
                return Body(function, _raw(valid, path, token), f"depth {depth} at {where}")
            return Body(function, token, f"depth {depth} as the body")
        if category == "wrong types":
            value = draw(json_values)
            return Body(function, json.dumps(_with(valid, path, value)).encode(), f"{where}={value!r:.40}")
        if category == "huge numbers":
            digits = draw(st.sampled_from([20, 400, 4_300, 4_301, 100_000]) | st.integers(1, 20_000))
            sign = draw(st.sampled_from([b"", b"-"]))
            tail = draw(st.sampled_from([b"", b".5", b"e999", b"e-999", b"E+999999999"]))
            token = sign + b"9" * digits + tail
            return Body(function, _raw(valid, path, token), f"{len(token)}-char number at {where}")
        if category == "NaN/Infinity literals":
            token = draw(st.sampled_from([b"NaN", b"Infinity", b"-Infinity", b"1e400", b"-1E+400"]))
            around = draw(st.lists(st.floats(allow_nan=False, allow_infinity=False), max_size=6))
            at = draw(st.integers(0, len(around)))
            if around:  # inside a list of ordinary numbers
                items = [json.dumps(x).encode() for x in around]
                token = b"[" + b", ".join([*items[:at], token, *items[at:]]) + b"]"
            return Body(function, _raw(valid, path, token), f"{token.decode()[:60]} at {where}")
        if category == "invalid UTF-8":
            data = json.dumps(valid).encode()
            bad = draw(
                st.sampled_from(
                    [b"\xff", b"\xfe\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\x80", b"\xf8\x88\x80\x80"]
                )
                | st.binary(min_size=1, max_size=8)
            )
            at = draw(st.integers(0, len(data)))
            return Body(function, data[:at] + bad + data[at:], f"{bad!r} at byte {at}")
        if category == "huge strings":
            size = draw(
                st.integers(1_000, 100_000)
                | st.integers(100_000, 2_000_000)
                | st.integers(8 * 2**20 - 200, 8 * 2**20 + 200)
                | st.integers(9_000_000, 9_500_000)
            )
            return Body(function, _raw(valid, path, b'"' + b"x" * size + b'"'), f"{size}-char {where}")
        return hostile_value(draw, target, function)

    return draw_body()


def hostile_value(draw: st.DrawFn, target: Target, function: str) -> Body:
    """A valid-looking body of ``function`` with one to three fields set to values meant to hurt."""
    run, n = target.cfg.run_id, target.n_iterations
    iters = [0, 1, 2, n - 1, n, n + 1, 999_999]
    menu: dict[tuple[Any, ...], list[Any]] = {
        ("iteration",): iters + [-1, 1_000_000, "0", 0.5, True],
        ("run_id",): [run, "other-run", "a" * 63, "a" * 64, "../x", "", "Fuzz-Run"],
        ("config_digest",): [target.cfg.digest(), "0" * 16, "f" * 16, "G" * 16],
    }
    if function == "rollout-collector":
        menu[("shard",)] = [0, 1, 2, 9_999, 10_000, -1]
    if function == "policy-evaluator":
        menu[("version",)] = [0, 1, 2, 3, n, 999_999, 1_000_001, -1, None]
        menu[("episodes",)] = [1, 2, 0, 1_001, None]
    if function == "reward-aggregator":
        for s in (0, 1):
            menu[("shards", s, "key")] = [layout.traj_key(run, i, s) for i in iters] + [
                layout.traj_key("other-run", 0, s),
                layout.traj_key(run, 0, 1 - s),
                "../../etc/passwd",
                "/etc/passwd",
                layout.config_key(run),
            ]
            menu[("shards", s, "shard")] = [0, 1, 2, -1]
            menu[("shards", s, "steps")] = [-5, 0, 123, 10**12]
            menu[("shards", s, "episode_returns")] = [[], [1e308], [-5.0] * 1000]
            menu[("shards", s, "episode_lengths")] = [[-1], [0], [10**9]]
            menu[("shards", s, "seconds")] = [-1.0, 0.0, 1e300]
        menu[("shards",)] = [[], [target.valid["reward-aggregator"]["shards"][0]] * 2]
    if function == "policy-updater":
        menu[("mode",)] = ["update", "init", "INIT", ""]
        menu[("batch", "key")] = [layout.batch_key(run, i) for i in iters] + [
            layout.batch_key("other-run", 0),
            layout.policy_key(run, 1),
        ]
        menu[("batch", "steps")] = [-5, 0, 10**12]
        menu[("batch",)] = [None, {}]
    fields = draw(st.lists(st.sampled_from(sorted(menu, key=str)), min_size=1, max_size=3, unique=True))
    body = target.valid[function]
    changes = []
    for path in sorted(fields, key=len, reverse=True):  # a field before the container holding it
        value = draw(st.sampled_from(menu[path]))
        body = _with(body, path, value)
        changes.append(f"{'.'.join(map(str, path))}={value!r:.40}")
    return Body(function, json.dumps(body).encode(), ", ".join(changes))


def _drawn(strategy: st.SearchStrategy[Any], examples: int, at: int, each: Callable[[Any], None]) -> None:
    """Call ``each`` on ``examples`` values of ``strategy`` drawn from hypothesis seed ``at``."""
    if examples <= 0:
        return

    @seed(at)
    @settings(
        max_examples=examples,
        database=None,
        deadline=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(strategy)
    def draw(value: Any) -> None:
        each(value)

    draw()


def _drawn_at_least(
    strategy: st.SearchStrategy[Any], examples: int, at: int, each: Callable[[Any], None], check: Check
) -> None:
    """Like :func:`_drawn`, with further seeds until ``check`` has counted ``examples`` cases.

    Hypothesis stops early when it believes a strategy's space is exhausted; more seeds keep the count.
    """
    target = check.tried + examples
    for attempt in range(10):
        if check.tried >= target:
            return
        _drawn(strategy, target - check.tried, at + 100_000 * attempt, each)


# --------------------------------------------------------------------------- judging answers


def _strict_json(text: str) -> Any:
    def refuse(name: str) -> Any:
        raise ValueError(f"{name} in the body")

    return json.loads(text, parse_constant=refuse)


def judge(status: int, ctype: str, text: str, version_ok: bool = False) -> str | None:
    """What is wrong with an answer, or None: below 500, and a JSON error object for 4xx."""
    if status >= 500 and not (status == 505 and version_ok):
        return f"answered {status}"
    if status >= 400 and status != 505:
        if "json" not in ctype:
            return f"{status} with Content-Type {ctype!r}"
        try:
            obj = _strict_json(text)
        except ValueError as exc:
            return f"{status} body is not JSON ({exc})"
        if not isinstance(obj, dict) or not isinstance(obj.get("error"), str):
            return f"{status} body has no error message"
    elif status == 200 and "json" in ctype:
        try:
            _strict_json(text)
        except ValueError as exc:
            return f"200 body is not JSON ({exc})"
    return None


def _shown(data: bytes | str) -> str:
    return repr(data[:_MAX_SHOWN]) + ("..." if len(data) > _MAX_SHOWN else "")


# --------------------------------------------------------------------------- in-process


def fuzz_in_process(target: Target, examples: int = 10_000) -> list[Check]:
    """``examples`` fuzzed bodies through the functions' ``handle()`` in this process.

    Returns:
        One check per category, then the totals: answers of 500 or more, and exceptions escaping
        ``handle()`` (both must be 0).
    """
    modules = {f: importlib.import_module(catalog.function(f).module) for f in FUNCTIONS}
    checks = []
    high = Check(AREA, "in-process: answers >= 500", notes="every fuzzed body, every function")
    escaped = Check(AREA, "in-process: exceptions escaping handle()", notes="every fuzzed body")
    statuses: Counter[int] = Counter()
    per = -(-examples // len(CATEGORIES))
    for k, category in enumerate(CATEGORIES):
        check = Check(AREA, f"in-process: {category}", notes="no escape, below 500, strict JSON body")

        def each(body: Body, check: Check = check) -> None:
            case = f"{body.function} {body.label}: {_shown(body.data)}"
            try:
                resp = faas.render_response(modules[body.function].handle(faas.Event(body=body.data), None))
            except Exception as exc:
                escaped.record(False, f"{case} -> {type(exc).__name__}: {exc}"[:400])
                high.record(True)
                check.record(False, f"{case} -> raised {type(exc).__name__}")
                return
            escaped.record(True)
            statuses[resp.status] += 1
            high.record(resp.status < 500, f"{case} -> {resp.status} {resp.body[:200]}")
            problem = judge(resp.status, resp.headers.get("Content-Type", ""), resp.body)
            check.record(problem is None, f"{case} -> {problem}: {resp.body[:200]}")

        _drawn_at_least(body_strategy(target, category), per, 1000 + k, each, check)
        checks.append(check)
    high.notes += f"; answers by status: {_histogram(statuses)}"
    return [*checks, high, escaped]


def _histogram(statuses: Counter[Any]) -> str:
    return ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items(), key=lambda kv: str(kv[0])))


def check_no_stray_objects(target: Target) -> Check:
    """No object of the run lies under an iteration the run cannot be at."""
    check = Check(
        AREA,
        "no object written for an iteration the run cannot be at",
        notes=f"every iteration folder of the run below n_iterations ({target.n_iterations})",
    )
    prefix = f"{layout.run_prefix(target.cfg.run_id)}/iter/"
    for key in runtime.store().list(prefix):
        m = re.match(r"(\d+)/", key[len(prefix) :])
        check.record(m is not None and int(m.group(1)) < target.n_iterations, key)
    committed = int(runtime.meta().get_run(target.cfg.run_id)["version"])
    for i in range(target.n_iterations):
        if runtime.store().exists(layout.eval_key(target.cfg.run_id, i)):
            check.record(i + 1 <= committed, f"eval of iteration {i} with version {committed} committed")
    return check


# --------------------------------------------------------------------------- over HTTP


@contextmanager
def gateway_process(read_timeout: float = GATEWAY_READ_TIMEOUT_S) -> Iterator[tuple[str, int]]:
    """``python -m workflows.gateway.server --port 0`` as a child process; yields (host, port).

    It inherits this process's environment, so it serves the same stores. Its stderr (function errors
    are logged there) goes to a temporary file, included in the error if it fails to start. Without a
    password in the environment it gets a throwaway one: the fuzzer never calls ``/system/*``, and a
    generated one would be left in the checkout's ``.ftg/``.
    """
    cmd = [sys.executable, "-m", "workflows.gateway.server", "--port", "0"]
    cmd += ["--read-timeout", str(read_timeout)]
    env = dict(os.environ)
    if not env.get("FTG_GATEWAY_PASSWORD") and not env.get("FTG_GATEWAY_PASSWORD_FILE"):
        env["FTG_GATEWAY_PASSWORD"] = secrets.token_urlsafe(16)
    with tempfile.TemporaryFile() as log:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=log, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "gateway on http://127.0.0.1:PORT", or "" if it died
            m = re.search(r"http://([^:]+):(\d+)", line)
            if m is None:
                proc.wait(timeout=30)
                log.seek(0)
                raise RuntimeError(f"gateway did not start: {line!r} {log.read().decode(errors='replace')}")
            yield m.group(1), int(m.group(2))
        finally:
            stop_process(proc, timeout=30)
            if proc.stdout is not None:
                proc.stdout.close()


@dataclass(frozen=True)
class RawCase:
    """Bytes written to a fresh connection as they are, and what the gateway may do with them.

    Attributes:
        data: what the client sends.
        label: what is hostile about it.
        method: the request's method (HEAD answers carry no body).
        may_close: the request never completes its request line, so closing unanswered after the read
            timeout is acceptable.
        version_ok: the request names HTTP/2 or later, so 505 is the right answer.
        half_close: the client shuts its sending side after ``data``.
    """

    data: bytes
    label: str
    method: str = "POST"
    may_close: bool = False
    version_ok: bool = False
    half_close: bool = False


def _request(
    method: str, path: str, headers: list[tuple[str, str]], body: bytes, version: str = "HTTP/1.1"
) -> bytes:
    head = f"{method} {path} {version}\r\nHost: fuzz\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers)
    return head.encode("latin-1", "replace") + b"\r\n" + body


def raw_strategy(target: Target) -> st.SearchStrategy[RawCase]:  # noqa: C901 - a menu
    """Requests with hostile framing, methods, request lines and heads."""
    small = json.dumps(target.valid["policy-evaluator"]).encode()
    kinds = [
        "bad length",
        "short body",
        "missing length",
        "odd method",
        "garbage line",
        "chunked",
        "big head",
        "version",
        "expect",
        "incomplete head",
    ]

    @st.composite
    def draw_case(draw: st.DrawFn) -> RawCase:
        kind = draw(st.sampled_from(kinds))
        function = draw(st.sampled_from(FUNCTIONS))
        path = f"/function/{function}"
        body = draw(st.sampled_from([small, b"{}", b"{oops", b"", b"x" * 100]))
        if kind == "bad length":
            value = draw(
                st.sampled_from(
                    ["abc", "-1", "+5", "5 5", "0x10", "", " ", "1e3", "99999999999999999999999", "-0", "1.5"]
                    + [str(2**64), str(faas.MAX_BODY_BYTES + 1), "5, 6", "\u0663"]
                )
            )
            headers = [("Content-Length", value)]
            if draw(st.booleans()):
                headers.append(("Content-Length", str(len(body))))
            return RawCase(_request("POST", path, headers, body), f"Content-Length {value!r}")
        if kind == "short body":
            missing = draw(st.integers(1, 10_000))
            half = draw(st.booleans())
            headers = [("Content-Length", str(len(body) + missing))]
            label = f"body {missing} bytes short" + (", then EOF" if half else ", then silence")
            return RawCase(_request("POST", path, headers, body), label, half_close=half)
        if kind == "missing length":
            return RawCase(_request("POST", path, [], body), "body without Content-Length")
        if kind == "odd method":
            method = draw(
                st.sampled_from(
                    ["GET", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "TRACE", "CONNECT", "FOO"]
                )
                | st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=12)
            )
            where = draw(
                st.sampled_from(
                    [path, "/function/nope", "/function/", "/healthz", "/metrics", "/system/functions"]
                    + ["/", "/nope", "*", "http://x/function/a", "/function/../healthz", "/healthz?x=1"]
                )
            )
            headers = [("Content-Length", str(len(body)))] if draw(st.booleans()) else []
            return RawCase(_request(method, where, headers, body), f"{method} {where}", method=method)
        if kind == "garbage line":
            line = draw(st.binary(max_size=200).filter(lambda b: b"\n" not in b))
            rest = draw(st.sampled_from([b"\r\n", b"\r\nHost: x\r\n\r\n", b"\r\n\r\n", b"\n"]))
            return RawCase(line + rest, f"request line {line[:40]!r}")
        if kind == "chunked":
            chunked = draw(
                st.sampled_from(
                    [
                        (b"%x\r\n%s\r\n0\r\n\r\n" % (len(small), small), "valid chunked body"),
                        (b"zz\r\n", "bad chunk size"),
                        (b"FFFFFFFFFFFF\r\n", "huge chunk size"),
                        (b"800001\r\n", "chunk past the body limit"),
                        (b"5\r\nabcdeXX0\r\n\r\n", "chunk without CRLF"),
                        (b"1;" + b"e" * 2000 + b"\r\n", "long chunk line"),
                        (b"0\r\n" + b"T: x\r\n" * 100 + b"\r\n", "too many trailers"),
                        (b"5\r\nab", "truncated chunk"),
                    ]
                )
            )
            coding = draw(st.sampled_from(["chunked", "chunked", "gzip", "chunked, gzip", "identity"]))
            headers = [("Transfer-Encoding", coding)]
            if draw(st.integers(0, 4)) == 0:
                headers.append(("Content-Length", "5"))
            return RawCase(_request("POST", path, headers, chunked[0]), f"{coding}: {chunked[1]}")
        if kind == "big head":
            which = draw(st.sampled_from(["line", "header", "count"]))
            if which == "line":
                return RawCase(b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\n\r\n", "70 kB request line", "GET")
            if which == "header":
                return RawCase(_request("POST", path, [("X-Big", "b" * 70_000)], b""), "70 kB header")
            return RawCase(_request("POST", path, [(f"X-{i}", "v") for i in range(150)], b""), "150 headers")
        if kind == "version":
            version = draw(
                st.sampled_from(["HTTP/1.0", "HTTP/0.9", "HTTP/2.0", "HTTP/9.9", "HTTP/1.1.1", "FOO/1.1"])
            )
            framing = [("Content-Length", str(len(body)))]
            case = _request("POST", path, framing, body, version)
            return RawCase(case, f"version {version}", version_ok=version in ("HTTP/2.0", "HTTP/9.9"))
        if kind == "expect":
            length = draw(st.sampled_from([len(body), faas.MAX_BODY_BYTES + 1]))
            headers = [("Content-Length", str(length)), ("Expect", "100-continue")]
            return RawCase(_request("POST", path, headers, body if length == len(body) else b""), "Expect")
        partial = draw(st.sampled_from([b"POST " + path.encode(), b"POST / HTTP/1.1\r\nHost: x\r\n"]))
        return RawCase(partial, f"incomplete head {partial[:30]!r}", may_close=b"\n" not in partial)

    return draw_case()


def exchange(host: str, port: int, case: RawCase, timeout: float) -> tuple[int | None, str | None]:
    """Send ``case`` on a fresh connection and judge what comes back.

    Returns:
        (the answer's status, or None if there was none; what is wrong, or None if acceptable).
    """
    with socket.create_connection((host, port), timeout=timeout) as sock:
        with suppress(OSError):  # the gateway may answer (and stop reading) before all is sent
            sock.sendall(case.data)
            if case.half_close:
                sock.shutdown(socket.SHUT_WR)
        resp = http.client.HTTPResponse(sock, method=case.method)
        try:
            resp.begin()
            text = resp.read().decode(errors="replace")
        except TimeoutError:
            return None, f"no answer and no close within {timeout:g} s (hang)"
        except (http.client.HTTPException, OSError) as exc:
            if case.may_close and isinstance(exc, http.client.RemoteDisconnected):
                return None, None
            return None, f"closed without an answer ({type(exc).__name__})"
        if case.method == "HEAD":
            text = "{}" if resp.status < 400 else '{"error": "head"}'
        return resp.status, judge(resp.status, resp.getheader("Content-Type") or "", text, case.version_ok)


# What a client meets when the server closed a kept-alive connection just as a request went out on it.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


def _post(conn: http.client.HTTPConnection, body: Body) -> tuple[http.client.HTTPResponse, str]:
    """POST ``body`` to its function on ``conn``: (the response, its text)."""
    conn.request("POST", f"/function/{body.function}", body.data, {"Content-Type": "application/json"})
    resp = conn.getresponse()
    return resp, resp.read().decode(errors="replace")


def fuzz_http(
    target: Target,
    host: str,
    port: int,
    bodies: int = 1_200,
    raw: int = 1_000,
    read_timeout: float = GATEWAY_READ_TIMEOUT_S,
) -> list[Check]:
    """Fuzzed bodies POSTed through the gateway at ``host:port``, and raw requests with hostile framing.

    Args:
        target: the run the bodies aim at (served by the gateway's stores).
        host: the gateway's address.
        port: its port.
        bodies: bodies POSTed on one keep-alive connection (reopened after any failure).
        raw: raw requests, each on its own connection, 32 at a time.
        read_timeout: the gateway's read timeout; a client gives up after ``3 * read_timeout + 10`` s.

    Returns:
        One check per category, then the totals: answers of 500 or more, and connections dropped or hung.
    """
    checks = []
    high = Check(AREA, "over HTTP: answers >= 500", notes="505 accepted only for a request naming HTTP/2+")
    dropped = Check(AREA, "over HTTP: connections dropped or hung", notes="every request answered or closed")
    statuses: Counter[int | str] = Counter()
    conn = http.client.HTTPConnection(host, port, timeout=3 * read_timeout + 10)
    last_answer = time.monotonic()
    per = -(-bodies // len(CATEGORIES))
    for k, category in enumerate(CATEGORIES):
        check = Check(AREA, f"over HTTP: {category}", notes="POST on a keep-alive connection")

        def each(body: Body, check: Check = check) -> None:
            nonlocal conn, last_answer
            case = f"{body.function} {body.label}: {_shown(body.data)}"
            if time.monotonic() - last_answer > read_timeout / 2:
                # The gateway closes a keep-alive connection idle for its read timeout, and drawing the
                # next body can take that long on a loaded machine; a client then opens a new one, as
                # HTTP clients do, rather than write into a connection the server is closing.
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=3 * read_timeout + 10)
            reused = conn.sock is not None  # open: kept alive after an earlier answer
            try:
                try:
                    resp, text = _post(conn, body)
                except _STALE:
                    if not reused:
                        raise
                    # The server closed the kept-alive connection (its read timeout) as this request
                    # went out; HTTP clients send again on a new one, and so does this one, once.
                    conn.close()
                    conn = http.client.HTTPConnection(host, port, timeout=3 * read_timeout + 10)
                    resp, text = _post(conn, body)
            except (http.client.HTTPException, OSError) as exc:
                conn.close()
                conn = http.client.HTTPConnection(host, port, timeout=3 * read_timeout + 10)
                dropped.record(False, f"{case} -> {type(exc).__name__}: {exc}")
                check.record(False, f"{case} -> connection lost")
                return
            last_answer = time.monotonic()
            dropped.record(True)
            statuses[resp.status] += 1
            high.record(resp.status < 500, f"{case} -> {resp.status} {text[:200]}")
            problem = judge(resp.status, resp.getheader("Content-Type") or "", text)
            check.record(problem is None, f"{case} -> {problem}: {text[:200]}")

        _drawn_at_least(body_strategy(target, category), per, 2000 + k, each, check)
        checks.append(check)
    conn.close()

    cases: list[RawCase] = []
    for attempt in range(10):  # more seeds if hypothesis stops early
        if len(cases) < raw:
            _drawn(raw_strategy(target), raw - len(cases), 3000 + 100_000 * attempt, cases.append)
    raw_check = Check(AREA, "over HTTP: raw requests with hostile framing", notes="one connection each")
    lock = threading.Lock()

    def one(case: RawCase) -> None:
        status, problem = exchange(host, port, case, 3 * read_timeout + 10)
        with lock:
            statuses[status if status is not None else "closed"] += 1
            raw_check.record(problem is None, f"{case.label}: {_shown(case.data)} -> {problem}")
            hung_or_dropped = problem is not None and ("closed" in problem or "hang" in problem)
            dropped.record(not hung_or_dropped, f"{case.label} -> {problem}")
            high.record(problem is None or not problem.startswith("answered 5"), f"{case.label} -> {problem}")

    with cf.ThreadPoolExecutor(max_workers=32) as pool:
        list(pool.map(one, cases))
    high.notes += f"; answers by status: {_histogram(statuses)}"
    return [*checks, raw_check, high, dropped]


# --------------------------------------------------------------------------- the area


def run(scale: int = 1) -> list[Check]:
    """The hostile-input area: ``10,000 * scale`` bodies in-process, ``2,200 * scale`` requests over HTTP.

    Works in a scratch directory of its own; the process's store settings are restored afterwards.
    """
    with tempfile.TemporaryDirectory(prefix="ftg-fuzz-") as tmp, scratch_stores(Path(tmp)):
        target = make_target()
        checks = fuzz_in_process(target, 10_000 * scale)
        with gateway_process() as (host, port):
            checks += fuzz_http(target, host, port, bodies=1_200 * scale, raw=1_000 * scale)
        checks.append(check_no_stray_objects(target))
    return checks
