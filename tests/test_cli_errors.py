"""Every operator command answers a mistake with one line on stderr and exit status 2.

A misspelt flag (named with the nearest one), a missing path and a model that cannot be loaded are each one
line, ``<prog>: error: ...`` for the arguments and ``error: ...`` for what they lead to, with status 2;
``ACOUSTIC_TRACEBACK=1`` brings the traceback back. Each command runs as the user runs it, in a subprocess
from the repository root, and stops before any trained model, AWS call or training is reached.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from common import cli, contract

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Case:
    """A command line (``{tmp}`` is the test's folder) and the one line it must answer with."""

    args: tuple[str, ...]
    line: str


INVOKE = "python -m tools.invoke: error: "
BATCH = "python -m tools.batch"
SERVE = "python -m tools.serve: error: "
JOB = "python -m tools.local_job: error: "
STAGE = "python -m staging: error: "

CASES = {
    "invoke, a misspelt flag": Case(
        ("tools.invoke", "--endpont", "e", "{tmp}/clip.wav"),
        INVOKE + "unrecognized argument --endpont; did you mean --endpoint?",
    ),
    "invoke, a misspelt flag after the required ones": Case(
        ("tools.invoke", "--url", "http://127.0.0.1:9", "--segmnets", "{tmp}/clip.wav"),
        INVOKE + "unrecognized argument --segmnets; did you mean --segments?",
    ),
    "invoke, a missing clip": Case(
        ("tools.invoke", "--endpoint", "e", "{tmp}/missing.wav"),
        INVOKE + "no such file: {tmp}/missing.wav",
    ),
    "batch, a subcommand's misspelt flag": Case(
        ("tools.batch", "start", "--modle", "m", "--bucket", "b", "--prefix", "p"),
        f"{BATCH} start: error: unrecognized argument --modle; did you mean --model?",
    ),
    "batch, a misspelt flag after the subcommand's": Case(
        ("tools.batch", "start", "--model", "m", "--bucket", "b", "--prefix", "p", "--wiat"),
        f"{BATCH}: error: unrecognized argument --wiat; did you mean --wait?",
    ),
    "batch, a misspelt subcommand": Case(
        ("tools.batch", "strat", "--model", "m"),
        f"{BATCH}: error: argument command: invalid choice: 'strat' (choose from 'start', 'results'); "
        "did you mean 'start'?",
    ),
    "serve, a misspelt flag": Case(
        ("tools.serve", "--model-dri", "{tmp}/model"),
        SERVE + "unrecognized argument --model-dri; did you mean --model-dir?",
    ),
    "serve, a missing model": Case(
        ("tools.serve", "--model-dir", "{tmp}/missing", "--port", "0"),
        SERVE + "--model-dir {tmp}/missing: no such file or directory",
    ),
    "serve, a file that is no model": Case(
        ("tools.serve", "--model-dir", "{tmp}/clip.wav", "--port", "0"),
        SERVE + "--model-dir {tmp}/clip.wav is neither a model directory nor a model.tar.gz",
    ),
    "serve, a folder that is no model": Case(
        ("tools.serve", "--model-dir", "{tmp}", "--port", "0"),
        "error: {tmp} is not a model: it has no code/inference.py (give --model-dir the model directory a "
        "training job wrote, or its model.tar.gz)",
    ),
    "serve, a model that cannot be loaded": Case(
        ("tools.serve", "--model-dir", "{tmp}/model", "--port", "0"),
        "error: cannot load the model in {tmp}/model: OSError: no model.safetensors in {tmp}/model "
        f"(weights missing) ({cli.TRACEBACK_VARIABLE}=1 shows where)",
    ),
    "local job, a misspelt flag": Case(
        ("tools.local_job", "--decsribe", "job"),
        JOB + "unrecognized argument --decsribe; did you mean --describe?",
    ),
    "local job, a missing job definition": Case(
        ("tools.local_job", "{tmp}/job.json"), JOB + "no such file: {tmp}/job.json"
    ),
    "local job, a job definition that is not JSON": Case(
        ("tools.local_job", "{tmp}/clip.wav"),
        "error: {tmp}/clip.wav is not a JSON job definition: Expecting value: line 1 column 1 (char 0)",
    ),
    "staging, a misspelt flag": Case(
        ("staging", "esc50", "--too", "{tmp}/out"), STAGE + "unrecognized argument --too; did you mean --to?"
    ),
    "staging, a misspelt source": Case(
        ("staging", "esc5", "--to", "{tmp}/out"),
        STAGE + "argument source: invalid choice: 'esc5' (choose from 'commonvoice', 'esc50', 'folder', "
        "'fsd50k', 'librispeech'); did you mean 'esc50'?",
    ),
    "staging, a missing source folder": Case(
        ("staging", "folder", "--source-url", "{tmp}/missing", "--to", "{tmp}/out", "--no-progress"),
        "error: {tmp}/missing: no such directory",
    ),
    "acoustic-shield serve, a missing model": Case(
        ("tools.cli", "serve", "--model-dir", "{tmp}/missing"),
        SERVE + "--model-dir {tmp}/missing: no such file or directory",
    ),
    "acoustic-shield serve, a model that cannot be loaded": Case(
        ("tools.cli", "serve", "--model-dir", "{tmp}/model", "--port", "0"),
        "error: cannot load the model in {tmp}/model: OSError: no model.safetensors in {tmp}/model "
        f"(weights missing) ({cli.TRACEBACK_VARIABLE}=1 shows where)",
    ),
    "acoustic-shield verify, a misspelt flag": Case(
        ("tools.cli", "verify", "--endpont", "e"),
        INVOKE + "unrecognized argument --endpont; did you mean --endpoint?",
    ),
    "acoustic-shield job, a job definition that is not JSON": Case(
        ("tools.cli", "job", "{tmp}/clip.wav"),
        "error: {tmp}/clip.wav is not a JSON job definition: Expecting value: line 1 column 1 (char 0)",
    ),
    "acoustic-shield stage, a misspelt flag": Case(
        ("tools.cli", "stage", "folder", "--source-ulr", "x", "--to", "{tmp}/out"),
        STAGE + "unrecognized argument --source-ulr; did you mean --source-url?",
    ),
    "acoustic-shield batch, a misspelt flag": Case(
        ("tools.cli", "batch", "results", "--buckte", "b", "--prefix", "p"),
        f"{BATCH} results: error: unrecognized argument --buckte; did you mean --bucket?",
    ),
}


@pytest.fixture
def mistakes(tmp_path: Path) -> Path:
    """A clip (a file that is neither a model nor a job definition) and a model whose ``model_fn`` fails as
    a model without its weights does, without importing anything heavy."""
    (tmp_path / "clip.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVE")
    code = tmp_path / "model" / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text(
        "def model_fn(model_dir):\n"
        "    raise OSError(f'no model.safetensors in {model_dir}\\n(weights missing)')\n"
    )
    return tmp_path


def run(args: tuple[str, ...], tmp: Path, *, tracebacks: bool) -> subprocess.CompletedProcess[str]:
    environ = {key: value for key, value in os.environ.items() if key != cli.TRACEBACK_VARIABLE}
    if tracebacks:
        environ[cli.TRACEBACK_VARIABLE] = "1"
    command = [sys.executable, "-m", *(arg.replace("{tmp}", str(tmp)) for arg in args)]
    return subprocess.run(
        command, cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_mistake_is_one_line_that_names_it_and_status_2(case: Case, mistakes: Path) -> None:
    # Given a command line with one mistake / When it runs
    result = run(case.args, mistakes, tracebacks=False)
    # Then stderr is the one line that names the mistake (and the nearest flag), and the status is 2
    assert result.stderr.splitlines() == [case.line.replace("{tmp}", str(mistakes))], result.stderr
    assert result.returncode == 2
    assert result.stdout == ""


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_the_traceback_variable_brings_the_traceback_back(case: Case, mistakes: Path) -> None:
    # Given the same mistake, with ACOUSTIC_TRACEBACK=1 / When it runs
    result = run(case.args, mistakes, tracebacks=True)
    # Then stderr holds the traceback as well as what went wrong, and the status is still 2
    assert result.stderr.startswith("Traceback (most recent call last):"), result.stderr
    assert result.returncode == 2
    what = case.line.replace("{tmp}", str(mistakes)).split("error: ", 1)[1]
    assert what.split(" (")[0].split(";")[0] in " ".join(result.stderr.split())


def test_serving_a_trained_models_code_without_its_model_is_one_line(tmp_path: Path) -> None:
    # Given a model directory with the serving code a training job writes into code/, but nothing trained
    model = tmp_path / "model"
    shutil.copy(ROOT / contract.SERVING_ENTRY, _parents(model / contract.CODE_DIR / contract.HANDLER_FILE))
    for name in contract.SERVING_CODE:
        shutil.copy(ROOT / name, _parents(model / contract.CODE_DIR / name))
    # When it is served
    result = run(("tools.serve", "--model-dir", str(model), "--port", "0"), tmp_path, tracebacks=False)
    # Then the handler's own reason is one line (what it logs while loading is held back), with status 2
    [line] = result.stderr.splitlines()
    assert line.startswith(f"error: cannot load the model in {model}: FileNotFoundError: "), line
    assert result.returncode == 2
    # And with the traceback variable, its log and the traceback come back
    verbose = run(("tools.serve", "--model-dir", str(model), "--port", "0"), tmp_path, tracebacks=True)
    assert "INFO" in verbose.stderr and "Traceback (most recent call last):" in verbose.stderr
    assert verbose.returncode == 2


def test_serving_on_a_port_in_use_is_one_line(tmp_path: Path) -> None:
    # Given a model that loads, and a port that something else listens on
    code = tmp_path / "model" / "code"
    code.mkdir(parents=True)
    (code / "inference.py").write_text("def model_fn(model_dir):\n    return object()\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # When the model is served on that port
        args = ("tools.serve", "--model-dir", str(tmp_path / "model"), "--port", str(port))
        result = run(args, tmp_path, tracebacks=False)
    # Then one line says so, with status 2
    assert result.stderr.splitlines() == [f"error: cannot listen on 127.0.0.1:{port}: Address already in use"]
    assert result.returncode == 2


def _parents(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_the_rehearsal_names_a_misspelt_flag_in_one_line(tmp_path: Path) -> None:
    # Given a misspelt flag (and, should it ever be accepted, a loop that does not exist and a folder of
    # its own, so that nothing starts and build/demo is left alone) / When the rehearsal runs
    args = ("tools.rehearse", "--epochz", "1", "--tasks", "no-such-loop", "--out", str(tmp_path / "demo"))
    result = run(args, tmp_path, tracebacks=False)
    # Then one line names the nearest flag, with status 2
    assert result.stderr.splitlines() == [
        "python -m tools.rehearse: error: unrecognized argument --epochz; did you mean --epochs?"
    ]
    assert result.returncode == 2


@pytest.mark.parametrize(
    "module", ["tools.serve", "tools.invoke", "tools.batch", "tools.local_job", "staging"]
)
def test_help_is_left_as_argparse_prints_it(module: str) -> None:
    # Given a command's --help / When it runs
    result = run((module, "--help"), ROOT, tracebacks=False)
    # Then the usage and every option are printed, with status 0
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith(f"usage: python -m {module} ") and "--help" in result.stdout
    assert result.stderr == ""
