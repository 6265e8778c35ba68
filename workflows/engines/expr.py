"""A small govaluate-compatible expression evaluator for ``when`` and ``successCondition``.

Argo evaluates a DAG task's ``when`` with govaluate after parameter substitution, and an HTTP template's
``successCondition`` over ``response.statusCode`` / ``response.body``. The local engine needs the same
answers for the subset our templates use, without ``eval()``:

- literals: numbers (float64, as govaluate), ``'single'`` / ``"double"`` quoted strings, ``true``/``false``
- identifiers (letters, digits, ``_`` and ``.``, e.g. ``response.statusCode``) bound from a dict; an unknown
  identifier is an error, except in *bare-words mode*, which mirrors Argo's ``when``: Argo turns every
  govaluate variable into a string, so ``foo == foo`` is true without quotes
- ``+ - * / %`` (``+`` concatenates when either side is a string), unary ``-`` and ``!``
- ``== != < <= > >=`` (numbers or strings; ``==`` across types is simply false), ``&&`` ``||`` (short-circuit)
- parentheses

Anything else (``=~``, ``?:``, ``in``, bitwise operators, function calls) is refused with an error naming it.
Division by zero follows Go float64 semantics (±Inf, NaN for ``%``), as govaluate does.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from functools import lru_cache
from typing import Any

__all__ = ["Expression", "ExpressionError", "compile_expression", "evaluate"]


class ExpressionError(ValueError):
    """The expression cannot be parsed or evaluated; the message names the expression."""


_TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)
  | (?P<str>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
  | (?P<ident>[A-Za-z_][A-Za-z0-9_.]*)
  | (?P<op>&&|\|\||==|!=|<=|>=|=~|!~|\*\*|<<|>>|\?\?|[-+*/%<>!()?:&|^~,\[\]=])
    """,
    re.VERBOSE,
)
_UNSUPPORTED_OPS = {"=~", "!~", "**", "<<", ">>", "??", "?", ":", "&", "|", "^", "~", ",", "[", "]", "="}
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "'": "'"}

# Binding power of binary operators: higher binds tighter (govaluate's order).
_BINARY_BP = {
    "||": 1,
    "&&": 2,
    "==": 3,
    "!=": 3,
    "<": 3,
    "<=": 3,
    ">": 3,
    ">=": 3,
    "+": 4,
    "-": 4,
    "*": 5,
    "/": 5,
    "%": 5,
}
_PREFIX_BP = 6

Evaluator = Callable[[Mapping[str, Any]], Any]
Fail = Callable[[str], ExpressionError]  # builds the error naming the whole expression


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            raise ExpressionError(f"unexpected character {text[pos]!r} at offset {pos} in {text!r}")
        kind = m.lastgroup or ""
        value = m.group()
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "op" and value in _UNSUPPORTED_OPS:
            raise ExpressionError(f"operator {value!r} is not supported (in {text!r})")
        tokens.append((kind, value))
    return tokens


def _type_name(v: Any) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, float):
        return "number"
    return "string" if isinstance(v, str) else type(v).__name__


def _as_number(v: Any) -> float | None:
    # Bound values may be Python ints (e.g. a status code); govaluate works in float64.
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return float(v)
    return None


def _go_str(v: Any) -> str:
    """Format like Go's %v for the values govaluate produces (used by string concatenation)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        if v.is_integer() and abs(v) < 1e21:
            return str(int(v))
        return repr(v)
    return str(v)


class _Parser:
    def __init__(self, text: str, bare_words: bool) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.pos = 0
        self.bare_words = bare_words
        self.identifiers: set[str] = set()

    def fail(self, msg: str) -> ExpressionError:
        return ExpressionError(f"{msg} in expression {self.text!r}")

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def parse(self) -> Evaluator:
        if not self.tokens:
            raise self.fail("empty expression")
        fn = self.expr(0)
        if self.pos != len(self.tokens):
            raise self.fail(f"unexpected {self.tokens[self.pos][1]!r}")
        return fn

    def expr(self, min_bp: int) -> Evaluator:
        left = self.prefix()
        while True:
            tok = self.peek()
            if tok is None or tok[0] != "op" or tok[1] not in _BINARY_BP:
                return left
            bp = _BINARY_BP[tok[1]]
            if bp <= min_bp:
                return left
            self.pos += 1
            right = self.expr(bp)  # left-associative: the right side only takes tighter operators
            left = self.binary(tok[1], left, right)

    def prefix(self) -> Evaluator:
        tok = self.peek()
        if tok is None:
            raise self.fail("unexpected end")
        kind, value = tok
        self.pos += 1
        if kind == "num":
            num = float(value)
            return lambda _env: num
        if kind == "str":
            s = _unquote(value)
            return lambda _env: s
        if kind == "ident":
            return self.identifier(value)
        if value == "(":
            inner = self.expr(0)
            closing = self.peek()
            if closing != ("op", ")"):
                raise self.fail("missing ')'")
            self.pos += 1
            return inner
        if value == "!":
            operand = self.expr(_PREFIX_BP)
            return lambda env: self._not(operand(env))
        if value == "-":
            operand = self.expr(_PREFIX_BP)
            return lambda env: self._neg(operand(env))
        raise self.fail(f"unexpected {value!r}")

    def identifier(self, name: str) -> Evaluator:
        if name == "true":
            return lambda _env: True
        if name == "false":
            return lambda _env: False
        if self.bare_words:
            return lambda _env: name
        self.identifiers.add(name)
        text = self.text

        def lookup(env: Mapping[str, Any]) -> Any:
            try:
                v = env[name]
            except KeyError:
                known = ", ".join(sorted(env)) or "none"
                raise ExpressionError(
                    f"unknown identifier {name!r} in expression {text!r} (bound: {known})"
                ) from None
            num = _as_number(v)
            return v if num is None else num

        return lookup

    def _not(self, v: Any) -> bool:
        if not isinstance(v, bool):
            raise self.fail(f"'!' needs a bool, got {_type_name(v)} {v!r}")
        return not v

    def _neg(self, v: Any) -> float:
        if not isinstance(v, float):
            raise self.fail(f"unary '-' needs a number, got {_type_name(v)} {v!r}")
        return -v

    def binary(self, op: str, left: Evaluator, right: Evaluator) -> Evaluator:
        return _BINARY_BUILDERS[op](op, left, right, self.fail)


def _logical(op: str, left: Evaluator, right: Evaluator, fail: Fail) -> Evaluator:
    want = op == "||"  # the value that short-circuits

    def logical(env: Mapping[str, Any]) -> bool:
        a = left(env)
        if not isinstance(a, bool):
            raise fail(f"{op!r} needs bools, got {_type_name(a)} {a!r}")
        if a is want:
            return a
        b = right(env)
        if not isinstance(b, bool):
            raise fail(f"{op!r} needs bools, got {_type_name(b)} {b!r}")
        return b

    return logical


def _equality(op: str, left: Evaluator, right: Evaluator, fail: Fail) -> Evaluator:
    negate = op == "!="

    def equality(env: Mapping[str, Any]) -> bool:
        a, b = left(env), right(env)
        same = type(a) is type(b) and a == b
        return same is not negate

    return equality


_FLOAT_CMP = {"<": float.__lt__, "<=": float.__le__, ">": float.__gt__, ">=": float.__ge__}
_STR_CMP = {"<": str.__lt__, "<=": str.__le__, ">": str.__gt__, ">=": str.__ge__}


def _comparison(op: str, left: Evaluator, right: Evaluator, fail: Fail) -> Evaluator:
    cmp, scmp = _FLOAT_CMP[op], _STR_CMP[op]

    def compare(env: Mapping[str, Any]) -> bool:
        a, b = left(env), right(env)
        if isinstance(a, float) and isinstance(b, float):
            return cmp(a, b)
        if isinstance(a, str) and isinstance(b, str):
            return scmp(a, b)
        raise fail(f"cannot compare {_type_name(a)} {a!r} {op} {_type_name(b)} {b!r}")

    return compare


def _plus(op: str, left: Evaluator, right: Evaluator, fail: Fail) -> Evaluator:
    def plus(env: Mapping[str, Any]) -> Any:
        a, b = left(env), right(env)
        if isinstance(a, float) and isinstance(b, float):
            return a + b
        if isinstance(a, str) or isinstance(b, str):
            return _go_str(a) + _go_str(b)
        raise fail(f"cannot add {_type_name(a)} {a!r} and {_type_name(b)} {b!r}")

    return plus


def _arithmetic(op: str, left: Evaluator, right: Evaluator, fail: Fail) -> Evaluator:
    arith = _ARITH[op]

    def arithmetic(env: Mapping[str, Any]) -> float:
        a, b = left(env), right(env)
        if not (isinstance(a, float) and isinstance(b, float)):
            raise fail(f"{op!r} needs numbers, got {_type_name(a)} {a!r} and {_type_name(b)} {b!r}")
        return arith(a, b)

    return arithmetic


def _sub(a: float, b: float) -> float:
    return a - b


def _mul(a: float, b: float) -> float:
    return a * b


def _div(a: float, b: float) -> float:
    if b == 0.0:
        # Go float64: x/0 is ±Inf, 0/0 is NaN
        return math.nan if a == 0.0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _mod(a: float, b: float) -> float:
    # govaluate uses math.Mod: the sign follows the dividend, and x % 0 is NaN
    if b == 0.0:
        return math.nan
    return math.fmod(a, b)


_ARITH: dict[str, Callable[[float, float], float]] = {"-": _sub, "*": _mul, "/": _div, "%": _mod}
_BINARY_BUILDERS: dict[str, Callable[[str, Evaluator, Evaluator, Fail], Evaluator]] = {
    "&&": _logical,
    "||": _logical,
    "==": _equality,
    "!=": _equality,
    "<": _comparison,
    "<=": _comparison,
    ">": _comparison,
    ">=": _comparison,
    "+": _plus,
    "-": _arithmetic,
    "*": _arithmetic,
    "/": _arithmetic,
    "%": _arithmetic,
}


class Expression:
    """A parsed expression; evaluate it many times with different bindings."""

    __slots__ = ("text", "identifiers", "bare_words", "_fn")

    def __init__(self, text: str, *, bare_words: bool = False) -> None:
        parser = _Parser(text, bare_words)
        self._fn = parser.parse()
        self.text = text
        self.bare_words = bare_words
        self.identifiers = frozenset(parser.identifiers)

    def evaluate(self, names: Mapping[str, Any] | None = None) -> Any:
        """The expression's value with identifiers bound from ``names``."""
        return self._fn(names or {})

    def evaluate_bool(self, names: Mapping[str, Any] | None = None) -> bool:
        """Like :meth:`evaluate`; ExpressionError unless the value is a bool."""
        value = self._fn(names or {})
        if not isinstance(value, bool):
            raise ExpressionError(f"expected a boolean from {self.text!r}, got {_type_name(value)} {value!r}")
        return value

    def __repr__(self) -> str:
        return f"Expression({self.text!r})"


@lru_cache(maxsize=1024)
def compile_expression(text: str, *, bare_words: bool = False) -> Expression:
    """Parse ``text`` once; cached because a ``when`` is re-parsed after every substitution."""
    return Expression(text, bare_words=bare_words)


def evaluate(text: str, names: Mapping[str, Any] | None = None, *, bare_words: bool = False) -> Any:
    """Parse (cached) and evaluate ``text`` in one go."""
    return compile_expression(text, bare_words=bare_words).evaluate(names)
