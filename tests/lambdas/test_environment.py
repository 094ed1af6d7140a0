"""The settings reader both Lambdas share: every problem collected, each naming its variable."""

from __future__ import annotations

import ast
import sys
from pathlib import Path
from typing import Any

import pytest

from lambdas import environment
from lambdas.environment import Invalid, Reader

FUNCTIONS = Path(environment.__file__).parent


class Refused(ValueError):
    """What a settings module raises when the reader found problems."""


def test_every_problem_is_collected_and_raised_once() -> None:
    # Given an environment with one variable missing and three invalid
    reader = Reader({"COUNT": "0", "SHARE": "1.5", "FLAG": "yes", "NAME": "ok"})

    # When each is read
    values = (
        reader.text("MISSING", "a name"),
        reader.integer("COUNT", "a whole number >= 1"),
        reader.fraction("SHARE"),
        reader.boolean("FLAG"),
        reader.text("NAME", "a name"),
    )

    # Then reading carried on, the wrong ones at their defaults, and one error names all four
    assert values == ("", 0, 0.0, False, "ok")
    with pytest.raises(Refused) as raised:
        reader.raise_problems(Refused, "test")
    assert str(raised.value) == (
        "invalid test environment: MISSING is missing: set it to a name; "
        "COUNT='0' is invalid: expected a whole number >= 1; "
        "SHARE='1.5' is invalid: expected a number between 0 and 1; "
        "FLAG='yes' is invalid: expected 'true' or 'false'"
    )


def test_no_problem_raises_nothing() -> None:
    # Given a complete environment
    reader = Reader({"NAME": " padded ", "FLAG": "TRUE"})

    # When it is read / Then the values are stripped and typed, and nothing is raised
    assert reader.text("NAME", "a name") == "padded"
    assert reader.boolean("FLAG") is True
    reader.raise_problems(Refused, "test")
    assert reader.problems == []


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_an_optional_variable_unset_or_empty_takes_its_default(raw: str | None) -> None:
    # Given an optional variable that is unset, empty or blank
    reader = Reader({} if raw is None else {"OPTIONAL": raw})

    # When it is read / Then it is its default, and that is no problem
    assert reader.text("OPTIONAL", "a name", required=False) == ""
    assert reader.integer("OPTIONAL", "a number", default=500, required=False) == 500
    assert reader.boolean("OPTIONAL", default=True) is True
    assert reader.json_value("OPTIONAL", list, "a JSON list", [], required=False) == []
    assert reader.problems == []


def test_a_pattern_must_match_the_whole_value() -> None:
    # Given a value that only starts like the pattern
    reader = Reader({"BUCKET": "my-bucket/extra"})

    # When it is read against the pattern / Then it is refused
    assert reader.text("BUCKET", "a bucket name", pattern=r"[a-z0-9-]+") == ""
    assert reader.problems == ["BUCKET='my-bucket/extra' is invalid: expected a bucket name"]


def test_integers_respect_their_minimum_and_allowed_values() -> None:
    # Given integers below a minimum, outside an allowed set, and fine
    reader = Reader({"LOW": "-1", "ODD": "250", "OK": "200", "WORD": "two"})

    # When they are read
    low = reader.integer("LOW", "a whole number >= 0", minimum=0)
    odd = reader.integer("ODD", "one of 100, 200", allowed=(100, 200), default=100)
    ok = reader.integer("OK", "one of 100, 200", allowed=(100, 200))
    word = reader.integer("WORD", "a whole number >= 1")

    # Then only the fine one is kept
    assert (low, odd, ok, word) == (0, 100, 200, 0)
    assert [p.split(" is ")[0] for p in reader.problems] == ["LOW='-1'", "ODD='250'", "WORD='two'"]


def test_json_says_where_it_fails_and_a_converter_says_why() -> None:
    # Given a variable that is not JSON, and one that is JSON a converter refuses with a reason
    def names(value: Any) -> list[str]:
        if value != ["a"]:
            raise Invalid(f"unknown: {', '.join(value)}")
        return list(value)

    reader = Reader({"BROKEN": "{", "UNKNOWN": '["b"]'})

    # When they are read
    reader.json_value("BROKEN", dict, "a JSON object", {})
    reader.json_value("UNKNOWN", names, "a JSON list of known names", [])

    # Then each problem says what was expected, and why the value is not it
    broken, unknown = reader.problems
    assert broken.startswith(
        "BROKEN='{' is invalid: expected a JSON object (not JSON: Expecting property name"
    )
    assert unknown == "UNKNOWN='[\"b\"]' is invalid: expected a JSON list of known names (unknown: b)"


def test_a_problem_found_across_variables_is_reported_like_the_others() -> None:
    # Given a variable needed only because another one is set (rules need the evaluator image)
    reader = Reader({})

    # When the settings module finds it missing / Then the problem names it, what to set, and why
    reader.missing("RULE_EVALUATOR_IMAGE", "the rule evaluator image URI", "the rules need it")
    reader.invalid("TUNING.max_jobs", "8", "an integer")
    assert reader.problems == [
        "RULE_EVALUATOR_IMAGE is missing: set it to the rule evaluator image URI (the rules need it)",
        "TUNING.max_jobs='8' is invalid: expected an integer",
    ]


def test_in_lambda_is_decided_by_the_variable_lambda_sets() -> None:
    # Given environments with and without the variable Lambda sets in every function
    # When / Then only the first is a Lambda execution environment
    assert environment.in_lambda({"AWS_LAMBDA_FUNCTION_NAME": "acoustic-shield-dev-launcher"})
    assert not environment.in_lambda({})


def test_the_shared_module_needs_nothing_but_the_standard_library() -> None:
    # Given the module each Lambda package carries beside its own code (no repository, no packages)
    tree = ast.parse((FUNCTIONS / "environment.py").read_text())

    # When its imports are listed
    imported = {
        (node.module or "").split(".")[0] if isinstance(node, ast.ImportFrom) else alias.name.split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }

    # Then every one is the standard library's (a relative import would name no module)
    assert imported - {"__future__"} <= sys.stdlib_module_names, imported
