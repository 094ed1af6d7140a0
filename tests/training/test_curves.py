"""training/curves.py: where TensorBoard event files go; the picture of the loss and the task's objective."""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

import tasks
from lambdas.launcher import logic
from tools import local_job
from training import curves, train

PNG = b"\x89PNG\r\n\x1a\n"
DOCUMENTED_LOCAL_PATH = "/opt/ml/output/tensorboard"  # TensorBoardOutputConfig.LocalPath's default
# The Trainer's log history of a short run: logging steps, evaluations, and the closing summary.
HISTORY: list[dict[str, Any]] = [
    {"loss": 1.40, "grad_norm": 3.1, "learning_rate": 3e-5, "epoch": 0.5, "step": 10},
    {"loss": 1.10, "grad_norm": 2.7, "learning_rate": 2e-5, "epoch": 1.0, "step": 20},
    {"eval_loss": 1.00, "eval_f1": 0.50, "eval_map": 0.40, "eval_wer": 0.80, "epoch": 1.0, "step": 20},
    {"loss": 0.70, "grad_norm": 2.0, "learning_rate": 1e-5, "epoch": 1.5, "step": 30},
    {"loss": float("nan"), "epoch": 1.75, "step": 35},
    {"eval_loss": 0.80, "eval_f1": 0.75, "eval_map": 0.70, "eval_wer": 0.55, "epoch": 2.0, "step": 40},
    {"eval_loss": 0.85, "eval_f1": 0.70, "eval_map": 0.72, "eval_wer": 0.60, "epoch": 3.0, "step": 60},
    {"train_runtime": 12.0, "train_loss": 1.0, "epoch": 3.0, "step": 60},
]


def _training(report_to: list[str], output_dir: str = "trainer_output", **fields: Any) -> SimpleNamespace:
    """What prepare_tensorboard reads and sets of TrainingArguments."""
    return SimpleNamespace(report_to=report_to, output_dir=output_dir, **fields)


# --- where the event files go -------------------------------------------------------------------------


def test_the_sagemaker_default_is_the_documented_local_path_the_launcher_keeps() -> None:
    """TensorBoardOutputConfig (Amazon SageMaker API Reference), LocalPath: "Path to local storage location
    for tensorBoard output. Defaults to /opt/ml/output/tensorboard"."""
    # Given what train.py writes to in a job, what local_job lays out, and the launcher's request
    # Then both folders are the documented default, which the launcher leaves in place
    assert str(curves.SAGEMAKER_TENSORBOARD_DIR) == local_job.TENSORBOARD_LOCAL_PATH == DOCUMENTED_LOCAL_PATH
    assert "LocalPath" not in logic.tensorboard_output_config("bucket")  # the launcher keeps the default


@pytest.mark.parametrize(
    ("requested", "environ", "expected"),
    [
        ("mine/tb", {"TENSORBOARD_LOGGING_DIR": "/elsewhere", "SM_TRAINING_ENV": "{}"}, "mine/tb"),
        (None, {"TENSORBOARD_LOGGING_DIR": "/laid/out/output/tensorboard", "SM_TRAINING_ENV": "{}"},
         "/laid/out/output/tensorboard"),
        (None, {"SM_TRAINING_ENV": "{}"}, "/opt/ml/output/tensorboard"),
        (None, {}, "out/eval/tensorboard"),
    ],
    ids=["argument", "variable", "sagemaker", "local"],
)  # fmt: skip
def test_the_folder_is_the_argument_the_variable_the_jobs_or_beside_the_reports(
    requested: str | None, environ: dict[str, str], expected: str
) -> None:
    # Given an argument, transformers' variable, a SageMaker job (the toolkit's SM_TRAINING_ENV), or none
    # When the folder is chosen
    chosen = curves.tensorboard_dir(requested, _training(["tensorboard"]), Path("out/eval"), environ)
    # Then the first that applies wins
    assert chosen == Path(expected)


def test_a_given_logging_dir_is_used_but_not_transformers_4s_own_default() -> None:
    # Given --logging_dir given (transformers 4), and the one transformers 4 fills in itself
    given = _training(["tensorboard"], logging_dir="logs/tb")
    filled = _training(["tensorboard"], output_dir="ckpt", logging_dir="ckpt/runs/May13_10-00-00_host")
    # When the folder is chosen outside SageMaker
    # Then the given one is taken, the filled-in one is not a choice
    assert curves.tensorboard_dir(None, given, Path("out"), {}) == Path("logs/tb")
    assert curves.tensorboard_dir(None, filled, Path("out"), {}) == Path("out/tensorboard")


def test_without_tensorboard_training_goes_on_without_event_files_and_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Given an environment without the tensorboard package, and the default report_to
    monkeypatch.setattr(curves, "tensorboard_available", lambda: False)
    training = _training(["tensorboard"])
    environ: dict[str, str] = {}
    # When TensorBoard is prepared
    with caplog.at_level(logging.WARNING, logger=curves.logger.name):
        chosen = curves.prepare_tensorboard(training, None, tmp_path, environ)
    # Then the Trainer will not report to TensorBoard (its callback would fail), and one warning says why
    assert chosen is None and training.report_to == []
    assert environ == {} and not any(tmp_path.iterdir())
    assert (
        "the tensorboard package is not installed" in caplog.text and "pip install tensorboard" in caplog.text
    )


def test_with_tensorboard_both_transformers_generations_are_pointed_at_the_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given tensorboard installed, and a transformers 4 TrainingArguments (it has logging_dir)
    monkeypatch.setattr(curves, "tensorboard_available", lambda: True)
    training = _training(["tensorboard"], logging_dir=None)
    environ: dict[str, str] = {}
    # When TensorBoard is prepared locally
    chosen = curves.prepare_tensorboard(training, None, tmp_path, environ)
    # Then the folder exists beside the reports; transformers 5 reads the variable, transformers 4 logging_dir
    assert chosen == tmp_path / "tensorboard" and chosen.is_dir()
    assert environ == {"TENSORBOARD_LOGGING_DIR": str(chosen)}
    assert training.logging_dir == str(chosen) and training.report_to == ["tensorboard"]


def test_a_folder_exported_for_an_earlier_run_in_the_process_is_not_the_next_runs(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # Given a run in this process that exported its folder (train.main called twice, as tests do)
    monkeypatch.setattr(curves, "tensorboard_available", lambda: True)
    environ: dict[str, str] = {}
    first = curves.prepare_tensorboard(_training(["tensorboard"]), None, tmp_path / "first", environ)
    # When the next run, with other reports, prepares its own
    second = curves.prepare_tensorboard(_training(["tensorboard"]), None, tmp_path / "second", environ)
    # Then it writes beside its own reports, and transformers is told so
    assert (first, second) == (tmp_path / "first" / "tensorboard", tmp_path / "second" / "tensorboard")
    assert environ["TENSORBOARD_LOGGING_DIR"] == str(second)


def test_report_to_none_prepares_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # Given --report_to none (the Trainer's report_to is then empty)
    monkeypatch.setattr(curves, "tensorboard_available", lambda: True)
    environ: dict[str, str] = {}
    # When TensorBoard is prepared / Then nothing is
    assert curves.prepare_tensorboard(_training([]), str(tmp_path / "tb"), tmp_path, environ) is None
    assert environ == {} and not (tmp_path / "tb").exists()


def test_train_py_reports_to_tensorboard_by_default_and_takes_a_folder() -> None:
    # When train.py's arguments are parsed
    _, data, training, _ = train.parse_arguments(["--tensorboard_dir", "tb"])
    # Then the Trainer reports to TensorBoard, into the folder given
    assert training.report_to == ["tensorboard"] and data.tensorboard_dir == "tb"


# --- the picture ----------------------------------------------------------------------------------------


def test_the_curves_are_the_logged_finite_values_by_step_without_the_summary() -> None:
    # When the loss and objective curves are read from the log history
    found = curves.history_curves(HISTORY, ("loss", "eval_loss", "eval_f1"))
    # Then each has its points in order, NaN and the closing train_loss left out
    assert found["loss"].steps == (10, 20, 30) and found["loss"].values == (1.40, 1.10, 0.70)
    assert found["eval_loss"].steps == (20, 40, 60)
    assert found["eval_f1"].best(higher_is_better=True) == (40, 0.75)


@pytest.mark.parametrize(("task_name", "best"), [("classification", (40, 0.75)), ("multilabel", (60, 0.72)),
                                                 ("asr", (40, 0.55))])  # fmt: skip
def test_each_task_gets_a_png_of_its_objective_with_the_best_marked(
    task_name: str, best: tuple[int, float], tmp_path: Path
) -> None:
    # Given a task (objective f1, map or wer, the last lower-is-better)
    task = tasks.load(task_name)
    # When the curves are drawn into the report folder
    path = curves.plot_curves(HISTORY, tmp_path, task)
    # Then training_curves.png is there, and the best evaluation is the task's best
    assert path == tmp_path / curves.CURVES_FILE and path.read_bytes()[:8] == PNG
    objective = curves.history_curves(HISTORY, (f"eval_{task.objective}",))[f"eval_{task.objective}"]
    assert objective.best(task.metric(task.objective).higher_is_better) == best


def test_a_history_without_evaluations_still_draws_the_loss(tmp_path: Path) -> None:
    history = [entry for entry in HISTORY if not any(key.startswith("eval_") for key in entry)]
    assert curves.plot_curves(history, tmp_path, tasks.load(None)) == tmp_path / curves.CURVES_FILE


def test_an_empty_history_draws_nothing(tmp_path: Path) -> None:
    assert curves.plot_curves([HISTORY[-1]], tmp_path, tasks.load(None)) is None
    assert not (tmp_path / curves.CURVES_FILE).exists()


def test_the_callback_draws_at_the_end_of_training_on_the_main_process_only(tmp_path: Path) -> None:
    # Given the callback train.py gives the Trainer
    main, other = tmp_path / "main", tmp_path / "other"
    # When training ends on the main process and on another one
    for directory, zero in ((main, True), (other, False)):
        callback = curves.TrainingCurves(directory, tasks.load(None))
        state = SimpleNamespace(is_world_process_zero=zero, log_history=HISTORY)
        callback.on_train_end(None, state, None)
    # Then only the main process wrote the picture
    assert (main / curves.CURVES_FILE).read_bytes()[:8] == PNG
    assert not other.exists()
