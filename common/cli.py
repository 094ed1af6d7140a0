"""Command-line errors in one line, for every command: the operator tools, the staging command and train.py.

A mistake the user can fix (a wrong flag, a missing path, a model that cannot be loaded) is one line on
stderr and exit status 2: ``Parser`` for the arguments (an unknown flag is named with the nearest one, an
invalid choice with the nearest choice; ``--help`` is argparse's), ``CommandError`` and ``run_command`` for
what the arguments lead to. ``ACOUSTIC_TRACEBACK=1`` prints the traceback instead, to see where an error came
from; an unexpected exception (a bug) prints its traceback either way. Standard library only: each bundle
whose command uses it ships it.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import traceback
from collections.abc import Callable, Sequence
from typing import NoReturn

# Set (to anything but 0) to get the traceback of an error instead of its one line.
TRACEBACK_VARIABLE = "ACOUSTIC_TRACEBACK"
USAGE_ERROR = 2  # argparse's status for a usage error, and every command's for a mistake the user can fix
_INVALID_CHOICE = re.compile(r"invalid choice: '(?P<value>[^']*)' \(choose from (?P<choices>.*)\)")


class CommandError(Exception):
    """A mistake the user can fix: a missing path, a model that cannot be loaded. ``run_command`` prints it
    as one line (``error: <message>``) and exits with status 2."""


def tracebacks_wanted() -> bool:
    """Whether ``ACOUSTIC_TRACEBACK`` asks for tracebacks instead of one-line errors."""
    return os.environ.get(TRACEBACK_VARIABLE, "").strip() not in ("", "0")


def one_line(text: object) -> str:
    """``text`` with its line breaks and runs of spaces as single spaces."""
    return " ".join(str(text).split())


def report(error: BaseException, message: object = None) -> None:
    """``error: <message>`` (default: the error's own) as one line on stderr, or the error's traceback when
    ``ACOUSTIC_TRACEBACK`` is set."""
    if tracebacks_wanted():
        traceback.print_exception(error, file=sys.stderr)
        return
    print(f"error: {one_line(error if message is None else message)}", file=sys.stderr, flush=True)


def run_command(main: Callable[[list[str] | None], int | None], argv: Sequence[str] | None = None) -> int:
    """``main(argv)``'s exit status, with a ``CommandError`` reported as one line and status 2."""
    try:
        return int(main(None if argv is None else list(argv)) or 0)
    except CommandError as error:
        report(error)
        return USAGE_ERROR


class Parser(argparse.ArgumentParser):
    """argparse whose errors are one line, ``<prog>: error: <message>``, and status 2, without the usage
    block (``--help`` is unchanged). A flag no option takes is named with the nearest one that exists, even
    when it made another error come first (``--endpont`` leaves ``--endpoint`` missing); an invalid choice
    is named with the nearest choice. With ``ACOUSTIC_TRACEBACK`` set, the stack comes before the line."""

    _given: list[str]

    def parse_known_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> tuple[argparse.Namespace, list[str]]:
        self._given = list(sys.argv[1:] if args is None else args)
        return super().parse_known_args(self._given, namespace)

    def error(self, message: str) -> NoReturn:
        line = f"{self.prog}: error: {one_line(self._explained(message))}"
        if tracebacks_wanted():
            print("Traceback (most recent call last):", file=sys.stderr)
            traceback.print_stack(sys._getframe(1), file=sys.stderr)
        self.exit(USAGE_ERROR, line + "\n")

    def _explained(self, message: str) -> str:
        unknown = [flag for flag in self._flags_given() if not self._knows(flag)]
        if unknown:
            return f"unrecognized argument {unknown[0]}; {self._nearest(unknown[0], self._flags(shown=True))}"
        invalid = _INVALID_CHOICE.search(message)
        if invalid:
            choices = re.findall(r"'([^']*)'", invalid["choices"])
            close = difflib.get_close_matches(invalid["value"], choices, n=1)
            return message + (f"; did you mean {close[0]!r}?" if close else "")
        return message

    def _nearest(self, flag: str, flags: set[str]) -> str:
        close = difflib.get_close_matches(
            flag, sorted(f for f in flags if f.startswith("--")), n=1, cutoff=0.7
        )
        return f"did you mean {close[0]}?" if close else f"{self.prog} --help lists the options"

    def _flags_given(self) -> list[str]:
        """The flags among the arguments (before ``--``), without their ``=value``."""
        flags = []
        for arg in getattr(self, "_given", []):
            if arg == "--":
                break
            if arg[:1] in self.prefix_chars and len(arg) > 1 and not self._negative_number_matcher.match(arg):
                flags.append(arg.split("=", 1)[0])
        return flags

    def _knows(self, flag: str) -> bool:
        """Whether an option of this parser or of one of its subcommands takes ``flag``, or a long option's
        name begins with it (argparse takes an unambiguous abbreviation, and names an ambiguous one)."""
        flags = self._flags(shown=False)
        if flag in flags:
            return True
        return self.allow_abbrev and flag.startswith("--") and any(f.startswith(flag) for f in flags)

    def _flags(self, *, shown: bool) -> set[str]:
        """Every option string of this parser and its subcommands' parsers; ``shown``: only those that
        ``--help`` lists."""
        flags: set[str] = set()
        for action in self._actions:
            if isinstance(action, argparse._SubParsersAction):
                for parser in action.choices.values():
                    flags |= parser._flags(shown=shown) if isinstance(parser, Parser) else set()
            elif not (shown and action.help == argparse.SUPPRESS):
                flags.update(action.option_strings)
        return flags
