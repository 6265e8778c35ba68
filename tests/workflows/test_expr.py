"""The expression evaluator: govaluate for ``when`` and ``successCondition``, expr-lang for retries."""

from __future__ import annotations

import itertools
import math
import re

import pytest

from workflows.engines.expr import (
    Expression,
    ExpressionError,
    UnsupportedExpressionError,
    compile_expression,
    evaluate,
    slotted_expression,
)
from workflows.iteration import EVAL_WHEN


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 + 2 * 3", 7.0),
        ("(1 + 2) * 3", 9.0),
        ("10 - 4 - 3", 3.0),  # left-associative
        ("2 * 3 % 4", 2.0),  # * and % share a level, left to right
        ("7 / 2", 3.5),  # float64 arithmetic, as govaluate
        ("-3 + 5", 2.0),
        ("-(2 + 3)", -5.0),
        ("1.5e1 / 3", 5.0),
        ("(3 + 1) % 2", 0.0),
        ("(4 + 1) % 3", 2.0),
        ("-7 % 3", -1.0),  # math.Mod: the sign follows the dividend
    ],
)
def test_arithmetic_and_precedence(text: str, expected: float) -> None:
    assert evaluate(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 < 2", True),
        ("2 <= 2", True),
        ("3 > 4", False),
        ("4 >= 4.0", True),
        ("1 == 1.0", True),
        ("1 != 2", True),
        ("'abc' < 'abd'", True),
        ('"b" > "a"', True),
        ("'x' == \"x\"", True),
        ("'1' == 1", False),  # no coercion across types
        ("'1' != 1", True),
        ("1 + 1 == 2 && 'a' == 'a'", True),
        ("true || false && false", True),  # && binds tighter than ||
        ("(true || false) && false", False),
        ("!false", True),
        ("!(1 == 1)", False),
        ("!true == false", True),  # prefix binds tighter than ==
        ("'ab' + 'c' == 'abc'", True),
        ("'n' + 1 == 'n1'", True),  # + concatenates when a side is a string
        ("(0 + 1) % 1 == 0 || 0 + 1 == 3", True),
        ("(0 + 1) % 2 == 0 || 0 + 1 == 3", False),
        ("(2 + 1) % 2 == 0 || 2 + 1 == 3", True),
    ],
)
def test_comparisons_and_logic(text: str, expected: bool) -> None:
    assert Expression(text).evaluate_bool() is expected


def test_identifiers_bound_from_dict() -> None:
    cond = Expression("response.statusCode == 200 && response.body != ''")
    assert cond.identifiers == {"response.statusCode", "response.body"}
    assert cond.evaluate_bool({"response.statusCode": 200, "response.body": "{}"}) is True
    assert cond.evaluate_bool({"response.statusCode": 400, "response.body": "{}"}) is False
    assert Expression("response.statusCode >= 200 && response.statusCode < 300").evaluate_bool(
        {"response.statusCode": 204}
    )


def test_unknown_identifier_is_a_clear_error() -> None:
    with pytest.raises(ExpressionError, match=r"unknown identifier 'response\.status'.*response\.statusCode"):
        Expression("response.status == 200").evaluate({"response.statusCode": 200})


def test_bare_words_mode_treats_identifiers_as_strings() -> None:
    # Argo's `when`: govaluate variables become strings, so unquoted words compare as text
    assert evaluate("Succeeded == Succeeded", bare_words=True) is True
    assert evaluate("foo != bar", bare_words=True) is True
    assert evaluate("true == true", bare_words=True) is True  # literals stay booleans


def test_short_circuit_skips_the_other_side() -> None:
    # the right side would raise (unknown identifier) if it were evaluated
    assert Expression("true || missing").evaluate_bool() is True
    assert Expression("false && missing").evaluate_bool() is False


def test_division_by_zero_follows_go_floats() -> None:
    assert evaluate("1 / 0") == math.inf
    assert evaluate("-1 / 0") == -math.inf
    assert math.isnan(evaluate("0 / 0"))
    assert math.isnan(evaluate("5 % 0"))
    assert evaluate("(3 + 1) % 0 == 0 || 3 + 1 == 4") is True  # eval-every 0: only the last iteration


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty expression"),
        ("1 +", "unexpected end"),
        ("(1 + 2", r"missing '\)'"),
        ("1 2", "unexpected '2'"),
        ("a =~ 'b'", "operator '=~' is not supported"),
        ("x ? 1 : 2", r"operator '\?' is not supported"),
        ("1 & 2", "operator '&' is not supported"),
        ("f(1)", "unknown identifier|unexpected"),
        ("'abc", "unexpected character"),
        ("1 $ 2", "unexpected character"),
    ],
)
def test_parse_errors(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        Expression(text).evaluate({})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("1 && true", "needs bools"),
        ("!1", "needs a bool"),
        ("-'a'", "needs a number"),
        ("'a' < 1", "cannot compare"),
        ("'a' - 1", "needs numbers"),
        ("true + 1", "cannot add"),
    ],
)
def test_type_errors(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        Expression(text).evaluate({})


def test_evaluate_bool_rejects_non_booleans() -> None:
    with pytest.raises(ExpressionError, match="expected a boolean"):
        Expression("1 + 1").evaluate_bool()


def test_compiled_expressions_are_cached() -> None:
    assert compile_expression("1 == 1") is compile_expression("1 == 1")
    assert compile_expression("a == a", bare_words=True) is not compile_expression("a == a")


def test_string_escapes() -> None:
    assert evaluate(r"'it\'s' == " + '"it\'s"') is True
    assert evaluate(r'"a\"b"') == 'a"b'


def test_every_binary_operator_has_an_evaluator() -> None:
    from workflows.engines import expr

    assert expr._BINARY_BUILDERS.keys() == expr._BINARY_BP.keys()


# --- the expr dialect (Argo's retryStrategy.expression) ---------------------------------------------

MESSAGE = {"m": "received non-2xx response code: 503", "s": "Failed"}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("m matches '503$'", True),
        ("m matches '^503'", False),  # unanchored search, as Go's MatchString
        ("m matches 'code: 5[0-9][0-9]$'", True),
        ("m matches 'code: 4(08|29)$'", False),
        ("m matches '[^0-9]$'", False),
        ("m matches 'co.e'", True),
        ("m matches 'x*'", True),
        ("!(m matches '503')", False),
        ("not (m matches '503')", False),
        ("s == 'Failed' and m matches '503'", True),
        ("s == 'Error' or m matches '503'", True),
        ("s == 'Error' || s != 'Failed'", False),
        ("!(s == 'Failed') && true", False),
        ("m matches '503' == true", True),  # matches is a comparison: left to right
        ('s == "Failed"', True),
        ("s == 1", False),  # strings never equal numbers
        ("s < 'G'", True),
    ],
)
def test_expr_dialect(text: str, expected: bool) -> None:
    assert Expression(text, dialect="expr").evaluate_bool(MESSAGE) is expected


def test_dollar_is_the_end_of_the_text_as_in_re2() -> None:
    # Python's $ also matches before a final newline; RE2's does not.
    assert evaluate("m matches '503$'", {"m": "503\n"}, dialect="expr") is False
    assert evaluate("m matches '^503'", {"m": "x\n503"}, dialect="expr") is False


def test_expr_dialect_word_operators_are_govaluate_identifiers() -> None:
    assert Expression("and == and", bare_words=True).evaluate_bool() is True
    assert Expression("m matches 'a'", dialect="expr").identifiers == {"m"}


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("asInt(m) > 1", r"function call asInt\(\.\.\.\) is not supported"),
        ("sprig.trim(m) == ''", r"function call sprig\.trim\(\.\.\.\)"),
        ("m + 'x' == 'y'", r"operator '\+' is not supported"),
        ("-1 == -1", r"operator '-' is not supported"),
        ("m in ['a']", "'in' is not supported"),
        ("m contains '5'", "'contains' is not supported"),
        ("m startsWith 'r'", "'startsWith' is not supported"),
        ("m == nil", "'nil' is not supported"),
        ("m ?? 'x'", r"operator '\?\?' is not supported"),
        ("m matches s", "pattern that is not a string literal"),
        ("m matches ('a')", "pattern that is not a string literal"),
        (r"m matches '\\d'", "backslash escapes"),
        (r"m == 'a\'b'", "backslash escapes"),
        ("m matches '(?i)x'", r"'\(\?' groups and flags"),
        ("m matches '[[:digit:]]'", "'\\[' inside a character class"),
        ("m matches 'a++'", "possessive or nested quantifier"),
        ("m matches 'a{,3}'", r"'\{,'"),
        ("m matches '[a--z]'", "inside a character class"),
        ("m matches '[ab'", "unterminated character class"),
        ("m matches `a`", "raw strings"),
    ],
)
def test_expr_dialect_refuses_what_it_does_not_implement(text: str, message: str) -> None:
    with pytest.raises(UnsupportedExpressionError, match=message):
        Expression(text, dialect="expr")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("m matches '(a'", "invalid pattern"),
        ("m not matches 'a'", "unexpected '!'"),
        ("m matches", "string literal"),
    ],
)
def test_expr_dialect_errors(text: str, message: str) -> None:
    with pytest.raises(ExpressionError, match=message):
        Expression(text, dialect="expr")


def test_matches_needs_a_string() -> None:
    with pytest.raises(ExpressionError, match="'matches' needs a string"):
        Expression("n matches 'a'", dialect="expr").evaluate({"n": 1})


def test_govaluate_has_no_matches_operator() -> None:
    with pytest.raises(ExpressionError, match="unexpected 'matches'"):
        Expression("'a' matches 'a'")
    with pytest.raises(ValueError, match="bare-words mode"):
        Expression("a", bare_words=True, dialect="expr")


# --- a `when` parsed once around its placeholders ------------------------------------------------------


def _parts(template: str) -> tuple[str, ...]:
    return tuple(re.split(r"\{\{(.*?)\}\}", template))  # literals at even indexes, names at odd ones


def _substituted(template: str, values: tuple[str, ...]) -> str:
    out = list(_parts(template))
    out[1::2] = values
    return "".join(out)


def _as_argo_would(template: str, values: tuple[str, ...]) -> bool | str:
    try:
        return compile_expression(_substituted(template, values), bare_words=True).evaluate_bool()
    except ExpressionError:
        return "error"


def test_the_iteration_s_eval_condition_parsed_once_agrees_with_every_substitution() -> None:
    slotted = slotted_expression(_parts(EVAL_WHEN))
    for iteration, every, iterations in itertools.product(range(13), range(1, 5), (6, 12)):
        values = (str(iteration), str(every), str(iteration), str(iterations))
        expected = _as_argo_would(EVAL_WHEN, values)
        assert isinstance(expected, bool)
        assert slotted.evaluate_bool(values) is expected, values


@pytest.mark.parametrize(
    ("template", "values"),
    [
        ("{{a}} == {{b}}", ("x", "x")),  # bare words
        ("{{a}} == {{b}}", ("x", "y")),
        ("{{a}} == {{b}}", ("1", "1.0")),  # numbers are float64
        ("{{a}} == {{b}}", ("'x y'", '"x y"')),  # quoted strings
        ("{{a}} == {{b}}", ("true", "true")),
        ("!{{a}}", ("false",)),
        ("-{{a}} < 2", ("3",)),
        ("2 -{{a}} == -1", ("3",)),  # binary minus, as in '2 -3'
        ("({{a}}) && {{b}} != 'x'", ("true", "word.with.dots")),
        ("{{a}} + 'b' == '1b'", ("1",)),
        ("{{a}} >= 1e2", ("150",)),
    ],
)
def test_a_slotted_when_gives_what_substituting_then_parsing_gives(
    template: str, values: tuple[str, ...]
) -> None:
    got = slotted_expression(_parts(template)).evaluate_bool(values)
    assert got is not None  # the fast path applies
    assert got is _as_argo_would(template, values)


@pytest.mark.parametrize(
    ("template", "values"),
    [
        ("{{a}} == 2", ("1 + 1",)),  # not one token: the substituted text parses differently
        ("{{a}} == -1", ("-1",)),
        ("{{a}} == 'a b'", ("a b",)),
        ("{{a}} == ''", ("",)),
        ("x{{a}} == 1", ("1",)),  # glued to a word
        ("{{a}}.5 == 1.5", ("1",)),  # glued to a number
        ("'{{a}}' == 'b'", ("b",)),  # inside a string
        ("{{a}} && true", ("1",)),  # an error: the usual path names the substituted text
        ("{{a}} +", ("1",)),  # not an expression
        ("{{a}} + 1", ("1",)),  # not a bool
        ("__ftg_slot_0__ == {{a}}", ("x",)),  # the name a placeholder is parsed under, written out
    ],
)
def test_a_slotted_when_leaves_to_the_usual_path_what_it_cannot_tell_exactly(
    template: str, values: tuple[str, ...]
) -> None:
    assert slotted_expression(_parts(template)).evaluate_bool(values) is None
