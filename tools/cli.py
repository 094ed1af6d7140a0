"""``acoustic-shield``: the operator commands, one entry point, from any directory.

Each subcommand is the tool it names, with that tool's own options (``acoustic-shield <command> --help``).
They run on your machine and ship nowhere: the training job, the endpoint, the staging build and the Lambdas
carry their own code.

Every command answers a mistake the user can fix (a wrong flag, a missing path, a model that cannot be loaded)
with one line on stderr and exit status 2, and ``ACOUSTIC_TRACEBACK=1`` prints the traceback instead
(``common.cli``).
"""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from common.cli import run_command

PROG = "acoustic-shield"


@dataclass(frozen=True)
class Command:
    """A subcommand: the module whose ``main(argv)`` runs it, what it does, an example, fixed leading args."""

    module: str
    summary: str
    example: str
    leading: tuple[str, ...] = field(default=())


COMMANDS: dict[str, Command] = {
    "demo": Command(
        "tools.rehearse.loop",
        "rehearse the whole retraining loop against a local AWS emulator (no account needed)",
        "acoustic-shield demo --out build/demo",
    ),
    "stage": Command(
        "staging.cli",
        "stage a dataset (ESC-50, FSD50K, your own folder) into the audiofolder layout, locally or in S3",
        "acoustic-shield stage esc50 --to s3://BUCKET/datasets/esc50/",
    ),
    "job": Command(
        "tools.local_job",
        "run a training job's definition on this machine with the real SageMaker training toolkit",
        "acoustic-shield job --describe JOB_NAME",
    ),
    "serve": Command(
        "tools.serve",
        "serve a model directory or model.tar.gz on the SageMaker container contract (/ping, /invocations)",
        "acoustic-shield serve --model-dir model.tar.gz --port 8080",
    ),
    "invoke": Command(
        "tools.invoke",
        "send clips to an endpoint (or a local server) and print the answers",
        "acoustic-shield invoke --endpoint ENDPOINT clip.wav",
    ),
    "verify": Command(
        "tools.invoke",
        "check that an endpoint serves the expected model package and answers a smoke clip",
        "acoustic-shield verify --endpoint ENDPOINT --expect-package ARN",
        ("--verify",),
    ),
    "batch": Command(
        "tools.batch",
        "run batch transform jobs over s3://BUCKET/batch-input/PREFIX and read their answers",
        "acoustic-shield batch start --model MODEL --bucket BUCKET --prefix street/2026-05 --wait",
    ),
}


def usage() -> str:
    """The top-level help: every command, what it does and an example."""
    width = max(map(len, COMMANDS))
    lines = [f"usage: {PROG} <command> [options]   ({PROG} <command> --help for a command's options)", ""]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "examples:"] + [f"  {command.example}" for command in COMMANDS.values()]
    return "\n".join(lines)


def _runner(command: Command) -> Callable[[list[str] | None], int | None]:
    main: Callable[[list[str] | None], int | None] = importlib.import_module(command.module).main
    return main


def main(argv: Sequence[str] | None = None) -> int:
    """Runs ``argv[0]``'s tool with the rest of ``argv``; a wrong command is one line and status 2."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    command = COMMANDS.get(name)
    if command is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        print(f"{PROG}: unknown command {name!r}; {hint}choose one of {', '.join(COMMANDS)}", file=sys.stderr)
        return 2
    try:
        return run_command(_runner(command), [*command.leading, *rest])
    except SystemExit as exit_:  # argparse's own --help and errors, or a tool's sys.exit("error: ...")
        code = exit_.code
        if isinstance(code, str):
            print(code, file=sys.stderr)
            return 1
        return code or 0


if __name__ == "__main__":
    sys.exit(main())
