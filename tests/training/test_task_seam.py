"""The task seam: a task defined only in the tests (``tests/tasks/presence.py``) trains, is gated, is served
and answers through the shared code, which names no task."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

import tasks
from common import contract
from common.lambda_contract import GateRule
from lambdas.promoter import logic as promoter
from lambdas.promoter.settings import Thresholds
from serving import inference
from standins.synthetic import clip, make_audiofolder
from tests.tasks import presence
from training import train

ROOT = Path(__file__).resolve().parents[2]
TASK = "tests.tasks.presence"
APPROVED_ARN = "arn:aws:sagemaker:eu-west-1:123456789012:model-package/presence/1"
TINY_CONFIG = ROOT / "training" / "configs" / "tiny-wav2vec2"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """The presence task trained by the shared training script (in this process) on tones and noise."""
    root = tmp_path_factory.mktemp("presence")
    make_audiofolder(root / "train", per_class=12, seed=1, labels=("low", "high", "noise"))
    make_audiofolder(root / "test", per_class=4, seed=2, labels=("low", "high", "noise"))
    # fmt: off
    outcome = train.main([
        "--task", TASK,
        "--model_name_or_path", str(TINY_CONFIG),
        "--train_dir", str(root / "train"), "--test_dir", str(root / "test"),
        "--model_dir", str(root / "model"), "--output_data_dir", str(root / "output"),
        "--max_length_seconds", "1", "--num_train_epochs", "4", "--learning_rate", "3e-3",
        "--per_device_train_batch_size", "8", "--disable_tqdm", "true",
    ])
    # fmt: on
    return SimpleNamespace(
        root=root,
        outcome=outcome,
        model_dir=root / "model",
        metrics=json.loads((root / "output" / contract.METRICS_FILE).read_text()),
        report=json.loads((root / "output" / contract.EVALUATION_FILE).read_text()),
    )


def test_the_task_trains_with_its_own_head_targets_and_metrics(trained):
    # Then the model has the task's head: one output, trained with binary cross-entropy on float targets
    config = json.loads((trained.model_dir / "config.json").read_text())
    assert config["id2label"] == {"0": "present"}
    assert config["problem_type"] == "multi_label_classification"
    # And each split reports the task's metrics, and only its own
    for split in ("eval", "test"):
        assert {f"{split}_{name}" for name in presence.TASK.metric_names} <= trained.metrics.keys()
        assert f"{split}_accuracy" not in trained.metrics
    # And the best model was picked on the task's objective, lower being better
    assert trained.report[contract.TASK_KEY] == TASK
    assert trained.report["evaluation"]["test"]["labels"] == ["present"]
    # And the model directory names its task, so that serving answers as it was trained
    meta = json.loads((trained.model_dir / contract.LABELS_FILE).read_text())
    assert meta[contract.TASK_KEY] == TASK and meta[contract.LABELS_KEY] == ["present"]


def test_the_task_is_gated_on_its_own_metrics_in_their_direction(trained):
    # Given the rules the stack writes for the task: each gated metric in its direction
    def rules(threshold: float) -> Thresholds:
        gated = (
            GateRule(name, presence.TASK.metric(name).higher_is_better, threshold)
            for name in presence.TASK.gated
        )
        return Thresholds(gate_rules=tuple(gated), max_regression=0.05)

    error = trained.metrics["test_error_rate"]
    # When the promoter's gate decides on the trained model's metrics
    passed = promoter.decide(trained.metrics, thresholds=rules(error), approved=[], manual_approval=False)
    failed = promoter.decide(
        trained.metrics, thresholds=rules(error - 0.01), approved=[], manual_approval=False
    )
    # Then a maximum at the error rate approves it, one below rejects it, naming the maximum
    assert (passed.status, passed.split) == (promoter.APPROVED, "test")
    assert failed.status == promoter.REJECTED
    assert any("test_error_rate" in reason and "maximum" in reason for reason in failed.reasons)

    # And an approved model blocks a candidate worse than it by more than max_regression, in the task's
    # direction: a higher error rate is worse
    def against(approved_error: float) -> str:
        approved = promoter.ApprovedModel(
            arn=APPROVED_ARN, split="test", version=1, metrics={"error_rate": approved_error}
        )
        return promoter.decide(
            {"test_error_rate": 0.3}, thresholds=rules(1.0), approved=[approved], manual_approval=False
        ).status

    assert against(0.1) == promoter.REJECTED
    assert against(0.28) == promoter.APPROVED


def test_the_best_model_follows_the_tasks_direction():
    # Given the presence task's arguments (its objective is lower-is-better)
    _, _, training_args, _ = train.parse_arguments(["--task", TASK, "--model_name_or_path", str(TINY_CONFIG)])
    # Then the best model is the one with the lowest error rate
    assert training_args.metric_for_best_model == "error_rate"
    assert training_args.greater_is_better is False
    # And classification's is the highest F1
    _, _, training_args, _ = train.parse_arguments(["--model_name_or_path", str(TINY_CONFIG)])
    assert (training_args.metric_for_best_model, training_args.greater_is_better) == ("f1", True)


def test_an_unknown_task_is_one_clear_error():
    # When the task is misspelt / Then the error names it and the tasks there are
    with pytest.raises(
        train.TrainingInputError, match=r"--task: unknown task 'clasification'.*classification"
    ):
        train.parse_arguments(["--task", "clasification"])


def test_the_task_is_served_and_answers_through_the_shared_handler(trained, monkeypatch):
    # Given the trained model loaded as an endpoint worker loads it
    monkeypatch.setenv(contract.ENV_THREADS, "1")
    model = inference.model_fn(str(trained.model_dir))
    assert isinstance(model.task, presence.Presence)
    rng = np.random.default_rng(7)

    def ask(label: str) -> dict[str, Any]:
        body = {"base64": _wav_base64(clip(label, 16_000, 1.5, rng)), "sample_rate": 16_000}
        request = inference.input_fn(json.dumps({**body, contract.SEGMENTS_KEY: True}), "application/json")
        return json.loads(inference.output_fn(inference.predict_fn(request, model), "application/json"))

    # When it is asked about a tone and about noise
    tone, noise = ask("low"), ask("noise")
    # Then it answers in the task's own words, per clip and per window
    for answer in (tone, noise):
        assert set(answer) >= {"present", "probability", contract.SEGMENTS_KEY}
        assert all(
            {"start", "end", "present", "probability"} <= set(s) for s in answer[contract.SEGMENTS_KEY]
        )
        assert 0.0 <= answer["probability"] <= 1.0
    # And the clip's probability is the windows' maximum (the task's pooling, not classification's mean)
    assert tone["probability"] == pytest.approx(max(s["probability"] for s in tone[contract.SEGMENTS_KEY]))


def _wav_base64(samples: np.ndarray) -> str:
    import base64
    import io

    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, samples, 16_000, format="WAV", subtype="PCM_16")
    return base64.b64encode(buffer.getvalue()).decode()


@pytest.mark.parametrize("name", tasks.known())
def test_each_task_module_imports_without_numpy_torch_or_scikit_learn(name: str) -> None:
    # Given a task of tasks/ (the infrastructure reads its facts where only the CDK app's libraries are)
    probe = (
        "import sys\n"
        "for blocked in ('numpy', 'torch', 'sklearn', 'matplotlib', 'transformers'):\n"
        "    sys.modules[blocked] = None\n"
        f"import tasks\ntask = tasks.load({name!r})\n"
        "print(task.name, task.objective, *task.gated)"
    )
    # When it is imported with those libraries out of reach
    run = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, timeout=60)
    # Then its facts are there
    assert run.returncode == 0, run.stderr
    assert run.stdout.split()[0] == name


# --- no shared module names a task ---------------------------------------------------------------------
SHARED = ("common", "training", "serving", "staging", "lambdas", "infra", "tools")


def _task_name_comparisons(path: Path, names: set[str], root: Path = ROOT) -> list[str]:
    """Comparisons (==, !=, in...) of anything with a task's name in a module's source, as ``file:line``."""
    return [
        f"{path.relative_to(root)}:{node.lineno}"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Compare)
        and any(isinstance(n, ast.Constant) and n.value in names for n in (node.left, *node.comparators))
    ]


def test_no_shared_module_compares_anything_with_a_task_name():
    # Given every task's name
    names = {tasks.load(name).name for name in tasks.known()} | {presence.TASK.name}
    # When the shared code is read
    found = [
        place
        for top in SHARED
        for path in sorted((ROOT / top).rglob("*.py"))
        for place in _task_name_comparisons(path, names)
    ]
    # Then no module outside tasks/ branches on a task's name
    assert found == []


def test_the_comparison_finder_finds_a_branch_on_a_task(tmp_path):
    # Given a module that branches on a task's name, and one that only mentions it
    (tmp_path / "branch.py").write_text('if task == "classification":\n    pass\n')
    (tmp_path / "mention.py").write_text('DEFAULT = "classification"\n')
    # When they are read / Then the branch is found, the mention is not
    assert _task_name_comparisons(tmp_path / "branch.py", {"classification"}, tmp_path) == ["branch.py:1"]
    assert _task_name_comparisons(tmp_path / "mention.py", {"classification"}, tmp_path) == []
