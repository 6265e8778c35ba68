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

The ``expr`` dialect is the part of expr-lang (what Argo evaluates ``retryStrategy.expression`` with) that
the local engine implements for retry decisions over string variables (``lastRetry.message``, ...):

- string literals without backslash escapes, numbers, ``true``/``false``, identifiers
- ``==`` ``!=`` ``<`` ``<=`` ``>`` ``>=``, ``&&``/``and``, ``||``/``or``, ``!``/``not``, parentheses, with
  expr-lang's precedence (``!`` binds tighter than the comparisons, as in govaluate)
- ``s matches 'pattern'``: the pattern must be a string literal in the subset where Go's RE2 and Python's
  ``re`` agree (literals, ``.``, classes, groups, ``|``, quantifiers, ``^``, ``$``); ``(?``, backslashes,
  POSIX classes and possessive quantifiers are refused. ``$`` is end of text, as in RE2.

Arithmetic, function calls (``asInt``, ``sprig``...), ``in``, ``contains``, ``startsWith``, ``endsWith``,
``??``, ternaries and the ``not matches`` suffix form are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from functools import lru_cache
from typing import Any, Literal

__all__ = [
    "Expression",
    "ExpressionError",
    "UnsupportedExpressionError",
    "SlottedExpression",
    "compile_expression",
    "evaluate",
    "slotted_expression",
]

Dialect = Literal["govaluate", "expr"]


class ExpressionError(ValueError):
    """The expression cannot be parsed or evaluated; the message names the expression."""


class UnsupportedExpressionError(ExpressionError):
    """The expression is valid in its language but uses a construct this evaluator does not implement."""


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
# The expr dialect: word operators spelled as the symbolic ones, words refused, and no arithmetic.
_EXPR_WORD_OPS = {"and": "&&", "or": "||", "not": "!", "matches": "matches"}
_EXPR_UNSUPPORTED_WORDS = {"in", "contains", "startsWith", "endsWith", "nil", "let", "if", "else"}
_EXPR_UNSUPPORTED_OPS = {"+", "-", "*", "/", "%"}
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
_EXPR_ONLY_BP = {"matches": 3}  # a comparison, as in expr-lang

Evaluator = Callable[[Mapping[str, Any]], Any]
Fail = Callable[[str], ExpressionError]  # builds the error naming the whole expression


def _unquote(raw: str) -> str:
    body = raw[1:-1]
    if "\\" not in body:
        return body
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m.group(1), m.group(1)), body)


def _tokenize(text: str, dialect: Dialect = "govaluate") -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    expr = dialect == "expr"
    while pos < len(text):
        m = _TOKEN_RE.match(text, pos)
        if m is None:
            if expr and text[pos] == "`":
                raise UnsupportedExpressionError(f"raw strings (`...`) are not supported (in {text!r})")
            raise ExpressionError(f"unexpected character {text[pos]!r} at offset {pos} in {text!r}")
        kind = m.lastgroup or ""
        value = m.group()
        pos = m.end()
        if kind == "ws":
            continue
        if kind == "op" and (value in _UNSUPPORTED_OPS or expr and value in _EXPR_UNSUPPORTED_OPS):
            raise UnsupportedExpressionError(f"operator {value!r} is not supported (in {text!r})")
        if expr and kind == "ident":
            if value in _EXPR_WORD_OPS:
                kind, value = "op", _EXPR_WORD_OPS[value]
            elif value in _EXPR_UNSUPPORTED_WORDS:
                raise UnsupportedExpressionError(f"{value!r} is not supported (in {text!r})")
            elif text[pos:].lstrip().startswith("("):
                raise UnsupportedExpressionError(f"function call {value}(...) is not supported (in {text!r})")
        if expr and kind == "str" and "\\" in value:
            raise UnsupportedExpressionError(
                f"backslash escapes in strings are not supported (in {text!r}); use a class such as [.]"
            )
        tokens.append((kind, value))
    return tokens


_REGEX_QUANTIFIERS = "*+?}"


def _portable_regex(pattern: str, fail: Callable[[str], ExpressionError]) -> re.Pattern[str]:
    r"""Compile ``pattern`` for Python if it means the same under Go's RE2; refuse it otherwise.

    Backslashes never reach here (string literals refuse them). ``$`` outside a class becomes ``\Z``:
    RE2's ``$`` (without the m flag) matches only at the end of the text, Python's also before a final
    newline.
    """
    out: list[str] = []
    in_class = False
    prev = ""
    for i, ch in enumerate(pattern):
        if in_class:
            if ch == "[":
                raise fail(f"'[' inside a character class (POSIX classes, nesting) in pattern {pattern!r}")
            if ch == "]" and prev != "[" and pattern[i - 2 : i] != "[^":
                in_class = False
            elif ch in "-&~|" and prev == ch:
                raise fail(f"{ch * 2!r} inside a character class in pattern {pattern!r}")
            out.append(ch)
        elif ch == "[":
            in_class = True
            out.append(ch)
        elif ch == "(" and pattern[i + 1 : i + 2] == "?":
            raise fail(f"'(?' groups and flags in pattern {pattern!r}")
        elif ch == "{" and pattern[i + 1 : i + 2] == ",":
            raise fail(f"'{{,' (a repetition to Python, a literal to RE2) in pattern {pattern!r}")
        elif ch == "+" and prev in _REGEX_QUANTIFIERS:
            raise fail(f"possessive or nested quantifier {prev + ch!r} in pattern {pattern!r}")
        elif ch == "$":
            out.append(r"\Z")
        else:
            out.append(ch)
        prev = ch
    if in_class:
        raise fail(f"unterminated character class in pattern {pattern!r}")
    try:
        return re.compile("".join(out))
    except re.error as exc:
        raise ExpressionError(f"invalid pattern {pattern!r}: {exc}") from None


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
    def __init__(self, text: str, bare_words: bool, dialect: Dialect = "govaluate") -> None:
        self.text = text
        self.tokens = _tokenize(text, dialect)
        self.pos = 0
        self.bare_words = bare_words
        self.binary_bp = {**_BINARY_BP, **_EXPR_ONLY_BP} if dialect == "expr" else _BINARY_BP
        self.identifiers: set[str] = set()
        self.slots: frozenset[str] = frozenset()  # placeholder markers (SlottedExpression)
        self.slots_seen: set[str] = set()

    def fail(self, msg: str) -> ExpressionError:
        return ExpressionError(f"{msg} in expression {self.text!r}")

    def refuse(self, what: str) -> UnsupportedExpressionError:
        return UnsupportedExpressionError(f"{what} is not supported (in expression {self.text!r})")

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
            if tok is None or tok[0] != "op" or tok[1] not in self.binary_bp:
                return left
            bp = self.binary_bp[tok[1]]
            if bp <= min_bp:
                return left
            self.pos += 1
            if tok[1] == "matches":
                left = self.matches(left)
                continue
            right = self.expr(bp)  # left-associative: the right side only takes tighter operators
            left = self.binary(tok[1], left, right)

    def matches(self, left: Evaluator) -> Evaluator:
        """``left matches 'pattern'``: the pattern is a literal, compiled (and checked) once."""
        tok = self.peek()
        if tok is None or tok[0] != "str":
            raise self.refuse("'matches' with a pattern that is not a string literal")
        self.pos += 1
        pattern = _portable_regex(_unquote(tok[1]), self.refuse)
        fail = self.fail

        def match(env: Mapping[str, Any]) -> bool:
            value = left(env)
            if not isinstance(value, str):
                raise fail(f"'matches' needs a string, got {_type_name(value)} {value!r}")
            return pattern.search(value) is not None

        return match

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
        if name in self.slots:
            self.slots_seen.add(name)
            return lambda env: env[name]
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

    __slots__ = ("text", "identifiers", "bare_words", "dialect", "_fn")

    def __init__(self, text: str, *, bare_words: bool = False, dialect: Dialect = "govaluate") -> None:
        if bare_words and dialect != "govaluate":
            raise ValueError("bare-words mode is govaluate's (Argo's 'when')")
        parser = _Parser(text, bare_words, dialect)
        self._fn = parser.parse()
        self.text = text
        self.bare_words = bare_words
        self.dialect = dialect
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


# What a substituted value must be to stand for exactly one token of the same meaning wherever a
# placeholder stands alone: a number, a word (true, false or a bare word) or a quoted string.
_ONE_TOKEN = re.compile(
    r"(?P<num>(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<ident>[A-Za-z_][A-Za-z0-9_.]*)"
    r"|(?P<str>\"(?:[^\"\\]|\\.)*\"|'(?:[^'\\]|\\.)*')"
)
# Characters that end any number, word or string token, and begin none: a placeholder between two of
# them (or the text's ends) cannot merge with its neighbours once substituted.
_DELIMITERS = frozenset(" \t\n\r()+-*/%<>=!&|")
_MARKER_PREFIX = "__ftg_slot_"
_MARKER = _MARKER_PREFIX + "{}__"


class SlottedExpression:
    """A ``when`` written around ``{{...}}`` placeholders, parsed once for every substitution.

    Argo substitutes the placeholders, then parses the text. The text changes each time a value does (the
    iteration number), so parsing after substitution parses every time. When each value is a single
    number, word or string token and its placeholder stands between delimiters, the substituted text's
    tokens are the template's with the value in the placeholder's place, so the template parsed once
    with a slot there gives the same value. Anything else (or an error) is left to the usual path:
    :meth:`evaluate_bool` answers None.

    Args:
        parts: the template split on placeholders (literals at even indexes, names at odd ones).
    """

    __slots__ = ("_fn", "_markers")

    def __init__(self, parts: Sequence[str]) -> None:
        literals = parts[0::2]
        markers = [_MARKER.format(i) for i in range(len(parts) // 2)]
        self._fn: Evaluator | None = None
        self._markers = markers
        if not all(_delimited(literals[i], literals[i + 1]) for i in range(len(markers))):
            return
        if any(_MARKER_PREFIX in literal for literal in literals):
            return  # a marker's name written in the template itself: it could not tell them apart
        text = "".join(p for pair in zip(literals, [*markers, ""], strict=True) for p in pair)
        try:
            parser = _Parser(text, bare_words=True)
            parser.slots = frozenset(markers)
            fn = parser.parse()
        except ExpressionError:
            return
        if len(parser.slots_seen) == len(markers):  # every marker a token of its own (none in a string)
            self._fn = fn

    def evaluate_bool(self, values: Sequence[str]) -> bool | None:
        """The condition's value with ``values`` substituted; None when this cannot tell exactly."""
        if self._fn is None or len(values) != len(self._markers):
            return None
        bound: dict[str, Any] = {}
        for marker, value in zip(self._markers, values, strict=True):
            m = _ONE_TOKEN.fullmatch(value)
            if m is None:
                return None
            if m.lastgroup == "num":
                bound[marker] = float(value)
            elif m.lastgroup == "str":
                bound[marker] = _unquote(value)
            else:
                bound[marker] = {"true": True, "false": False}.get(value, value)
        try:
            result = self._fn(bound)
        except ExpressionError:
            return None  # the usual path raises it, naming the substituted text
        return result if isinstance(result, bool) else None


def _delimited(before: str, after: str) -> bool:
    return (not before or before[-1] in _DELIMITERS) and (not after or after[0] in _DELIMITERS)


@lru_cache(maxsize=256)
def slotted_expression(parts: tuple[str, ...]) -> SlottedExpression:
    """The :class:`SlottedExpression` of a template's parts, built once per template."""
    return SlottedExpression(parts)


@lru_cache(maxsize=1024)
def compile_expression(text: str, *, bare_words: bool = False, dialect: Dialect = "govaluate") -> Expression:
    """Parse ``text`` once; cached because a ``when`` is re-parsed after every substitution."""
    return Expression(text, bare_words=bare_words, dialect=dialect)


def evaluate(
    text: str,
    names: Mapping[str, Any] | None = None,
    *,
    bare_words: bool = False,
    dialect: Dialect = "govaluate",
) -> Any:
    """Parse (cached) and evaluate ``text`` in one go."""
    return compile_expression(text, bare_words=bare_words, dialect=dialect).evaluate(names)
