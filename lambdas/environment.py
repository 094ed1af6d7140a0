"""Reading a Lambda function's environment: every problem collected, so one deploy fixes them all.

Shared by the launcher and the promoter. Each Lambda package carries a copy of this file beside its own
modules (``files=`` in infra/training/launcher.py and promoter.py), so it imports the standard library
only.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Container, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

# Lambda sets it in every function's environment; elsewhere (tests, tools) a handler is only imported.
IN_LAMBDA = "AWS_LAMBDA_FUNCTION_NAME"


class Invalid(ValueError):
    """Raised by a converter to say why a value is wrong, beyond what is expected of it."""


def in_lambda(environ: Mapping[str, str]) -> bool:
    """Whether this process is a Lambda execution environment (where a handler validates at cold start)."""
    return IN_LAMBDA in environ


class Reader:
    """Reads variables from one environment and collects every problem instead of stopping at the first.

    Each problem names the variable and what it should be: ``NAME is missing: set it to <expected>`` or
    ``NAME='value' is invalid: expected <expected>``. A variable with a problem reads as its default, so
    reading carries on; ``raise_problems`` then raises once, naming them all.
    """

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def missing(self, name: str, expected: str, why: str = "") -> None:
        """Records that ``name`` is unset or empty although it is needed (``why``: by what, if not always)."""
        self.problems.append(f"{name} is missing: set it to {expected}" + (f" ({why})" if why else ""))

    def invalid(self, name: str, value: Any, expected: str, why: str = "") -> None:
        """Records that ``name`` (a variable, or a field of one) holds a value it cannot take."""
        self.problems.append(
            f"{name}={value!r} is invalid: expected {expected}" + (f" ({why})" if why else "")
        )

    def read(
        self, name: str, convert: Callable[[str], T], expected: str, default: T, *, required: bool = True
    ) -> T:
        """``convert`` of the stripped value; ``default`` when it is unset, empty or refused (a ValueError).

        Unset or empty is a problem only when ``required``; an optional variable then takes ``default``.
        """
        raw = self.environ.get(name)
        if raw is None or raw.strip() == "":
            if required:
                self.missing(name, expected)
            return default
        try:
            return convert(raw.strip())
        except ValueError as error:
            self.invalid(name, raw, expected, str(error) if isinstance(error, Invalid) else "")
            return default

    def text(self, name: str, expected: str, *, pattern: str | None = None, required: bool = True) -> str:
        """The stripped value (``""`` if optional and unset); with ``pattern``, one that matches it whole."""

        def convert(raw: str) -> str:
            if pattern is not None and not re.fullmatch(pattern, raw):
                raise ValueError
            return raw

        return self.read(name, convert, expected, "", required=required)

    def integer(
        self,
        name: str,
        expected: str,
        *,
        minimum: int = 1,
        allowed: Container[int] | None = None,
        default: int = 0,
        required: bool = True,
    ) -> int:
        """An integer of at least ``minimum`` (and, with ``allowed``, one of those)."""

        def convert(raw: str) -> int:
            value = int(raw)
            if value < minimum or (allowed is not None and value not in allowed):
                raise ValueError
            return value

        return self.read(name, convert, expected, default, required=required)

    def fraction(self, name: str) -> float:
        """A number between 0 and 1 (a threshold, a share)."""

        def convert(raw: str) -> float:
            value = float(raw)
            if not 0.0 <= value <= 1.0:  # also rejects NaN
                raise ValueError
            return value

        return self.read(name, convert, "a number between 0 and 1", 0.0)

    def boolean(self, name: str, *, default: bool | None = None) -> bool:
        """``true`` or ``false``, any case; without a ``default`` the variable is required."""

        def convert(raw: str) -> bool:
            if raw.lower() not in ("true", "false"):
                raise ValueError
            return raw.lower() == "true"

        return self.read(name, convert, "'true' or 'false'", bool(default), required=default is None)

    def json_value(
        self, name: str, convert: Callable[[Any], T], expected: str, default: T, *, required: bool = True
    ) -> T:
        """``convert`` of the value parsed as JSON (a parse error is reported with where it failed)."""

        def parse(raw: str) -> T:
            try:
                value = json.loads(raw)
            except json.JSONDecodeError as error:
                raise Invalid(f"not JSON: {error}") from None
            return convert(value)

        return self.read(name, parse, expected, default, required=required)

    def raise_problems(self, error: Callable[[str], Exception], what: str) -> None:
        """Raises ``error`` naming every problem found so far, if there is one."""
        if self.problems:
            raise error(f"invalid {what} environment: " + "; ".join(self.problems))
