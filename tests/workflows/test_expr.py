"""The govaluate-compatible evaluator behind ``when`` and ``successCondition``."""

from __future__ import annotations

import math

import pytest

from workflows.engines.expr import Expression, ExpressionError, compile_expression, evaluate


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
