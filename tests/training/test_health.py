"""Training health: each rule on crafted log histories, the Trainer callback in real (tiny) Trainers, and
train.py runs whose loss stays flat or turns NaN."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from transformers import AutoConfig, AutoModelForAudioClassification, Trainer, TrainerState, TrainingArguments

from common import contract
from standins.synthetic import make_audiofolder
from training import health, train

ROOT = Path(train.__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "training" / "configs" / "tiny-wav2vec2"
DEFAULTS = health.HealthArguments()
F1 = "eval_f1"


# --- crafted log histories -------------------------------------------------------------------------------


def logged(losses: Iterable[float], *, every: int = 10, grad_norm: float | list[float] = 1.0) -> list[dict]:
    """Training log entries as the Trainer writes them, one per logging window of ``every`` steps."""
    losses = list(losses)
    norms = grad_norm if isinstance(grad_norm, list) else [grad_norm] * len(losses)
    return [
        {"loss": loss, "grad_norm": norm, "learning_rate": 3e-5, "epoch": 0.1 * i, "step": every * (i + 1)}
        for i, (loss, norm) in enumerate(zip(losses, norms, strict=True))
    ]


def evaluated(values: Iterable[tuple[float, float]], *, every: int = 20) -> list[dict]:
    """Evaluation entries: (eval_loss, eval_f1) every ``every`` steps."""
    return [
        {"eval_loss": loss, F1: f1, "eval_accuracy": f1, "epoch": 1.0 + i, "step": every * (i + 1)}
        for i, (loss, f1) in enumerate(values)
    ]


def history(*parts: list[dict]) -> list[dict]:
    """Entries in step order, an evaluation after the training log of its step (as the Trainer logs)."""
    entries = [entry for part in parts for entry in part]
    return sorted(entries, key=lambda entry: (entry["step"], "eval_loss" in entry))


def facts(patience: int = 0, **overrides: Any) -> health.RunFacts:
    """The run's settings as train.py's defaults have them (macro-F1, higher is better)."""
    args = SimpleNamespace(
        **{"metric_for_best_model": "f1", "greater_is_better": True, "fp16": False, **overrides}
    )
    return health.RunFacts.of(args, patience, DEFAULTS)


HEALTHY = history(
    logged([2.0 - 0.08 * i for i in range(20)], grad_norm=[3.0 - 0.1 * i for i in range(20)]),
    # validation loss a little above the training loss, the gap shrinking; F1 improving
    evaluated(
        [(2.06, 0.5), (1.85, 0.6), (1.6, 0.7), (1.35, 0.75), (1.1, 0.8), (0.89, 0.82), (0.68, 0.85)], every=28
    ),
)


def test_every_rule_of_the_contract_is_judged_and_has_advice():
    # When a history is judged
    report = health.evaluate(HEALTHY, DEFAULTS, facts(), health.Measurements())
    # Then every rule of the contract has an outcome, in the contract's order, and advice
    assert tuple(report.rules) == contract.HEALTH_RULES
    assert set(health.ADVICE) == set(contract.HEALTH_RULES)
    assert all(outcome.status in contract.HEALTH_STATUSES for outcome in report.rules.values())


def test_a_healthy_history_keeps_every_history_rule_silent():
    # Given a falling loss, a shrinking validation loss, an improving F1 and moderate gradient norms
    # When it is judged
    report = health.evaluate(HEALTHY, DEFAULTS, facts(), health.Measurements(steps=200))
    # Then each rule the history can judge was evaluated and stayed silent
    history_rules = (
        "loss_not_decreasing",
        "overfit",
        "overtraining",
        "vanishing_gradient",
        "exploding_gradient",
    )
    for rule in (*history_rules, "nonfinite_loss"):
        assert report.rules[rule].status == "silent", (rule, report.rules[rule])
    assert report.fired() == []


# --- loss_not_decreasing --------------------------------------------------------------------------------


def test_a_flat_training_loss_fires_loss_not_decreasing_at_its_last_logged_step():
    # Given a loss that fell, then stayed at 0.69 for the last ten logging windows
    losses = [1.5, 1.2, 0.9, *[0.69 + 0.0005 * (i % 2) for i in range(10)]]
    # When the rule judges it
    outcome = health.loss_not_decreasing(logged(losses), windows=5, min_percent=0.1)
    # Then it fired at the last logged step, with the fall it measured (below 0.1%)
    assert (outcome.status, outcome.step, outcome.threshold) == ("fired", 130, 0.1)
    assert outcome.value is not None and abs(outcome.value) < 0.1
    assert "last 5 logging windows" in outcome.reason


def test_a_rising_training_loss_fires_loss_not_decreasing_with_a_negative_fall():
    outcome = health.loss_not_decreasing(
        logged([1.0 + 0.1 * i for i in range(10)]), windows=5, min_percent=0.1
    )
    assert outcome.status == "fired"
    assert outcome.value == pytest.approx(-100 * 0.5 / 1.2)


def test_a_falling_training_loss_keeps_loss_not_decreasing_silent():
    outcome = health.loss_not_decreasing(
        logged([2.0 - 0.1 * i for i in range(10)]), windows=5, min_percent=0.1
    )
    assert (outcome.status, outcome.step) == ("silent", None)
    assert outcome.value == pytest.approx(100 * 0.5 / 1.8)


def test_too_few_logging_windows_leave_loss_not_decreasing_not_evaluated_and_say_how_many():
    # Given seven logged losses, where the rule needs two times five
    outcome = health.loss_not_decreasing(logged([1.0] * 7), windows=5, min_percent=0.1)
    # Then it was not evaluated, and says why
    assert outcome.status == "not_evaluated"
    assert outcome.reason == "too few logging windows (7 of 10)"
    assert outcome.value is None


# --- overfit --------------------------------------------------------------------------------------------


def _gap_history(eval_losses: list[float], train_loss: float = 0.5) -> list[dict]:
    return history(
        logged([train_loss] * (2 * len(eval_losses)), every=10),
        evaluated([(loss, 0.8) for loss in eval_losses], every=20),
    )


def test_a_validation_loss_diverging_from_the_training_loss_fires_overfit():
    # Given a training loss at 0.5 and a validation loss that rises evaluation after evaluation
    entries = _gap_history([0.52, 0.55, 0.6, 0.7, 0.8])
    # When the rule judges it (the gap must grow three times in a row and exceed 10% of the training loss)
    outcome = health.overfit(entries, evaluations=3, min_ratio=0.1)
    # Then it fired at the fourth evaluation, where both held for the first time
    assert (outcome.status, outcome.step) == ("fired", 80)
    assert outcome.value == pytest.approx(0.2 / 0.5)


@pytest.mark.parametrize(
    "eval_losses",
    [[0.5, 0.51, 0.52, 0.53, 0.54], [0.52, 0.6, 0.7, 0.65, 0.8]],
    ids=["growing-but-small", "growth-interrupted"],
)
def test_a_gap_that_stays_small_or_stops_growing_keeps_overfit_silent(eval_losses):
    assert health.overfit(_gap_history(eval_losses), evaluations=3, min_ratio=0.1).status == "silent"


def test_overfit_needs_one_evaluation_more_than_it_watches():
    outcome = health.overfit(_gap_history([0.52, 0.55, 0.6]), evaluations=3, min_ratio=0.1)
    assert outcome.status == "not_evaluated"
    assert "(3 of 4)" in outcome.reason


# --- overtraining, and early stopping -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metric", "greater", "values"),
    [("f1", True, [0.5, 0.7, 0.7, 0.69, 0.7, 0.71]), ("loss", False, [1.0, 0.8, 0.8, 0.81, 0.8, 0.7])],
)
def test_a_validation_metric_that_stops_improving_fires_overtraining_after_the_patience(
    metric, greater, values
):
    # Given a metric that improves twice, then not for three evaluations (equal is not better), then does
    entries = [{f"eval_{metric}": value, "step": 10 * (i + 1)} for i, value in enumerate(values)]
    # When the rule judges it with a patience of 3
    outcome = health.overtraining(entries, f"eval_{metric}", greater, patience=3)
    # Then it fired at the third evaluation without an improvement
    assert (outcome.status, outcome.step, outcome.value, outcome.threshold) == ("fired", 50, 3, 3)


def test_an_improving_validation_metric_keeps_overtraining_silent():
    entries = [{F1: value, "step": 10 * (i + 1)} for i, value in enumerate([0.5, 0.6, 0.6, 0.7, 0.8])]
    outcome = health.overtraining(entries, F1, True, patience=3)
    assert (outcome.status, outcome.value) == ("silent", 1)


def test_overtraining_takes_the_early_stopping_patience_when_one_is_set():
    # When early stopping is on / Then its patience is the rule's; else the rule's own default
    assert (facts(patience=2).patience, facts(patience=2).patience_from) == (2, "--early_stopping_patience")
    assert (facts().patience, facts().patience_from) == (3, "--overtraining_patience")
    assert facts(metric_for_best_model="loss", greater_is_better=None).greater_is_better is False


def test_overtraining_fires_where_transformers_early_stopping_stops():
    # Given transformers' own EarlyStoppingCallback fed the evaluations, with the best metric kept as the
    # Trainer keeps it (after the callbacks)
    values = [0.5, 0.6, 0.6, 0.55, 0.6, 0.59, 0.58]
    stopper = health.EarlyStopping(early_stopping_patience=2)
    state = SimpleNamespace(best_metric=None)
    args = SimpleNamespace(metric_for_best_model="f1", greater_is_better=True)
    stopped_at = None
    for i, value in enumerate(values):
        control = SimpleNamespace(should_training_stop=False)
        stopper.on_evaluate(args, state, control, metrics={F1: value})
        state.best_metric = value if state.best_metric is None else max(state.best_metric, value)
        if control.should_training_stop and stopped_at is None:
            stopped_at = 10 * (i + 1)
    # When the overtraining rule judges the same evaluations with the same patience
    entries = [{F1: value, "step": 10 * (i + 1)} for i, value in enumerate(values)]
    outcome = health.overtraining(entries, F1, True, patience=2)
    # Then it fired at the very step early stopping stopped
    assert stopped_at == 40
    assert (outcome.status, outcome.step) == ("fired", stopped_at)


def test_too_few_evaluations_or_no_metric_leave_overtraining_not_evaluated():
    entries = [{F1: 0.5, "step": 10}, {F1: 0.5, "step": 20}]
    assert (
        health.overtraining(entries, F1, True, patience=3).reason == "too few evaluations of eval_f1 (2 of 4)"
    )
    assert (
        health.overtraining(entries, None, True, patience=3).reason == "no --metric_for_best_model to watch"
    )


# --- gradients ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("bad", [math.nan, math.inf, 5e3], ids=["nan", "inf", "huge"])
def test_a_nan_infinite_or_huge_gradient_norm_fires_exploding_gradient(bad):
    # Given gradient norms around 2 with one bad one at step 40
    entries = logged([1.0] * 6, grad_norm=[2.0, 2.1, 1.9, bad, 2.0, 2.0])
    # When the rule judges them
    outcome = health.exploding_gradient(entries, max_norm=1000.0)
    # Then it fired at that step, with that value
    assert (outcome.status, outcome.step) == ("fired", 40)
    assert outcome.value == bad or (math.isnan(bad) and math.isnan(outcome.value))


def test_moderate_gradient_norms_keep_both_gradient_rules_silent():
    entries = logged([1.0] * 4, grad_norm=[5.0, 2.0, 0.5, 0.01])
    exploding = health.exploding_gradient(entries, max_norm=1000.0)
    vanishing = health.vanishing_gradient(entries, min_norm=1e-7)
    assert (exploding.status, exploding.value) == ("silent", 5.0)
    assert (vanishing.status, vanishing.value) == ("silent", 0.01)


def test_overflowing_fp16_steps_do_not_fire_exploding_gradient():
    # Given fp16 training, whose loss scaler skips a step with an infinite gradient norm by design
    entries = logged([1.0] * 3, grad_norm=[2.0, math.inf, 2.0])
    # When the rule judges it / Then the skipped step is left out, and said so
    outcome = health.exploding_gradient(entries, max_norm=1000.0, fp16=True)
    assert outcome.status == "silent"
    assert "1 overflowing fp16 step(s) left out" in outcome.reason


def test_a_gradient_norm_that_collapses_fires_vanishing_gradient():
    entries = logged([1.0] * 4, grad_norm=[1.0, 1e-3, 3e-9, 1e-10])
    outcome = health.vanishing_gradient(entries, min_norm=1e-7)
    assert (outcome.status, outcome.step, outcome.value) == ("fired", 30, 1e-10)


def test_without_a_logged_gradient_norm_the_gradient_rules_are_not_evaluated():
    entries = [{"loss": 1.0, "step": 10}]
    assert health.vanishing_gradient(entries, 1e-7).status == "not_evaluated"
    assert health.exploding_gradient(entries, 1e3).status == "not_evaluated"


# --- nonfinite_loss -------------------------------------------------------------------------------------


def test_a_non_finite_loss_fires_nonfinite_loss_at_its_step():
    # Given a NaN loss this process saw at step 12, or an infinite one logged at step 20
    seen = health.nonfinite_loss(logged([1.0]), (12, math.nan), steps=12)
    in_log = health.nonfinite_loss(logged([1.0, math.inf]), None, steps=20)
    # Then the rule fired at that step
    assert (seen.status, seen.step, seen.value) == ("fired", 12, 1)
    assert (in_log.status, in_log.step) == ("fired", 20)
    # And it is silent when every step's loss was finite
    assert health.nonfinite_loss(logged([1.0]), None, steps=10).status == "silent"


# --- data loading ---------------------------------------------------------------------------------------


class Clock:
    """A clock the test moves forward."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _drive(rules: health.HealthRules, clock: Clock, steps: int, *, wait: float, compute: float) -> None:
    """The Trainer's callback order for ``steps`` steps, each after ``wait`` seconds of fetching batches,
    with a log and a slow evaluation halfway (neither of which is waiting for batches)."""
    args, control = SimpleNamespace(world_size=1), SimpleNamespace(should_training_stop=False)
    state = SimpleNamespace(global_step=0, is_world_process_zero=False, log_history=[])
    rules.on_train_begin(args, state, control)
    rules.on_epoch_begin(args, state, control)
    for _ in range(steps):
        clock.now += wait
        rules.on_step_begin(args, state, control)
        clock.now += compute
        state.global_step += 1
        rules.on_step_end(args, state, control)
        if state.global_step == steps // 2:
            clock.now += 30.0
            rules.on_log(args, state, control)
            rules.on_evaluate(args, state, control)
    rules.on_train_end(args, state, control)


@pytest.mark.parametrize(("wait", "fired"), [(0.3, True), (0.01, False)])
def test_a_slow_data_loader_fires_data_loading_with_the_share_it_measured(wait, fired):
    # Given steps of 0.1 s, after waiting for batches 0.3 s (slow) or 0.01 s (fast)
    clock = Clock()
    rules = health.HealthRules(DEFAULTS, facts(), clock=clock)
    # When the Trainer runs 30 steps (the first 5 are the warm-up)
    _drive(rules, clock, 30, wait=wait, compute=0.1)
    # Then the share waiting excludes the evaluation, and fires above 50%
    outcome = rules.report.rules["data_loading"]
    assert outcome.status == ("fired" if fired else "silent")
    assert outcome.value == pytest.approx(100 * wait / (wait + 0.1))
    assert rules.measured.timed_steps == 25


def test_data_loading_needs_enough_timed_steps_after_the_warm_up():
    clock = Clock()
    rules = health.HealthRules(DEFAULTS, facts(), clock=clock)
    _drive(rules, clock, 12, wait=0.3, compute=0.1)
    assert rules.report.rules["data_loading"].reason == (
        "too few timed steps (7 of 10, after the first 5 of this process)"
    )


class Batches(torch.utils.data.Dataset):
    """Four features, two classes; each item takes ``delay`` seconds to load; items fetched after the first
    ``nan_after`` are NaN, whatever the order."""

    def __init__(self, size: int, delay: float = 0.0, nan_after: int | None = None) -> None:
        self.size, self.delay, self.nan_after, self.fetched = size, delay, nan_after, 0

    def __len__(self) -> int:
        return self.size

    def __getitem__(self, i: int) -> dict[str, Any]:
        time.sleep(self.delay)
        self.fetched += 1
        x = torch.linspace(-1, 1, 4) * (i % 2 * 2 - 1)
        if self.nan_after is not None and self.fetched > self.nan_after:
            x = torch.full((4,), math.nan)
        return {"x": x, "labels": i % 2}


class Linear(torch.nn.Module):
    """A linear classifier whose forward takes ``compute`` seconds (a stand-in for a real model's work)."""

    def __init__(self, compute: float = 0.0) -> None:
        super().__init__()
        self.linear, self.compute = torch.nn.Linear(4, 2), compute

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        time.sleep(self.compute)
        logits = self.linear(x)
        return {"loss": torch.nn.functional.cross_entropy(logits, labels), "logits": logits}


def _tiny_trainer(
    tmp_path: Path, dataset: Batches, rules: health.HealthRules, compute: float = 0.0, **settings: Any
) -> Trainer:
    args = TrainingArguments(
        output_dir=str(tmp_path / "checkpoints"),
        per_device_train_batch_size=1,
        report_to="none",
        disable_tqdm=True,
        use_cpu=True,
        logging_steps=1,
        **settings,
    )
    return Trainer(
        model=Linear(compute), args=args, train_dataset=dataset, eval_dataset=Batches(4), callbacks=[rules]
    )


@pytest.mark.parametrize(("delay", "fired"), [(0.03, True), (0.0, False)])
def test_waiting_for_a_slow_dataset_is_measured_in_a_real_trainer(tmp_path, delay, fired):
    # Given steps that compute for 10 ms, and items that take 30 ms to load (or no time)
    rules = health.HealthRules(DEFAULTS, facts())
    trainer = _tiny_trainer(tmp_path, Batches(20, delay=delay), rules, 0.01, max_steps=20, save_strategy="no")
    # When the Trainer trains
    trainer.train()
    # Then the time between one step and the next counts as waiting for batches
    outcome = rules.report.rules["data_loading"]
    assert rules.measured.timed_steps == 15
    assert outcome.status == ("fired" if fired else "silent"), outcome.reason


def test_a_nan_loss_stops_a_real_trainer_at_that_step_without_evaluating_or_saving_it(tmp_path, capsys):
    # Given a run that evaluates and saves every step, and data whose fourth batch makes the loss NaN
    rules = health.HealthRules(DEFAULTS, facts())
    trainer = _tiny_trainer(
        tmp_path,
        Batches(10, nan_after=3),
        rules,
        max_steps=10,
        eval_strategy="steps",
        eval_steps=1,
        save_strategy="steps",
        save_steps=1,
    )
    # When it trains
    trainer.train()
    # Then it stopped at step 4: checkpoints and evaluations of steps 1-3 only, and says why
    assert trainer.state.global_step == 4
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == [
        f"checkpoint-{i}" for i in (1, 2, 3)
    ]
    assert [entry["step"] for entry in trainer.state.log_history if "eval_loss" in entry] == [1, 2, 3]
    assert rules.stopped is not None and rules.stopped.startswith(
        "training stopped at step 4: the training loss was nan"
    )
    outcome = rules.report.rules["nonfinite_loss"]
    assert (outcome.status, outcome.step) == ("fired", 4)
    # And the flag was printed once, at once
    out = capsys.readouterr().out.splitlines()
    assert out.count("health_nonfinite_loss=1") == 1
    assert out.count("health_nonfinite_loss_value=1") == 1


# --- GPU ------------------------------------------------------------------------------------------------


class FakeGpu(health.Gpu):
    def __init__(self, utilization: float | Exception = 90.0, memory: float = 40.0) -> None:
        self._utilization, self._memory = utilization, memory

    def missing(self) -> str | None:
        return None

    def utilization(self) -> float:
        if isinstance(self._utilization, Exception):
            raise self._utilization
        return self._utilization

    def memory_percent(self) -> float:
        return self._memory


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only outcome")
def test_without_a_gpu_the_gpu_rules_are_not_evaluated_and_print_nothing():
    clock = Clock()
    rules = health.HealthRules(DEFAULTS, facts(), clock=clock)
    _drive(rules, clock, 30, wait=0.01, compute=0.1)
    for rule in ("gpu_utilization", "gpu_memory"):
        assert (rules.report.rules[rule].status, rules.report.rules[rule].reason) == (
            "not_evaluated",
            "no GPU",
        )
        assert not any(line.startswith(f"health_{rule}") for line in rules.report.lines())
        assert contract.health_metric(rule) not in rules.report.metrics()


def test_gpu_utilization_without_pynvml_is_not_evaluated_with_that_reason():
    clock = Clock()
    rules = health.HealthRules(DEFAULTS, facts(), gpu=FakeGpu(ModuleNotFoundError("pynvml")), clock=clock)
    _drive(rules, clock, 30, wait=0.01, compute=0.1)
    outcome = rules.report.rules["gpu_utilization"]
    assert outcome.status == "not_evaluated"
    assert "pynvml" in outcome.reason
    assert rules.report.rules["gpu_memory"].status == "silent"


@pytest.mark.parametrize(
    ("gpu", "fired"),
    [(FakeGpu(utilization=20.0, memory=40.0), {"gpu_utilization"}), (FakeGpu(90.0, 97.5), {"gpu_memory"})],
    ids=["idle", "full"],
)
def test_an_idle_gpu_fires_gpu_utilization_and_a_full_one_gpu_memory(gpu, fired):
    clock = Clock()
    rules = health.HealthRules(DEFAULTS, facts(), gpu=gpu, clock=clock)
    _drive(rules, clock, 30, wait=0.01, compute=0.1)
    assert {rule for rule in ("gpu_utilization", "gpu_memory") if rule in rules.report.fired()} == fired


# --- resuming -------------------------------------------------------------------------------------------


def test_a_resumed_history_gives_the_same_outcome_as_an_uninterrupted_one(tmp_path):
    # Given a run that overfits and plateaus, interrupted at step 80 and its state saved as the checkpoint's
    # trainer_state.json, then continued in a new process from it
    whole = history(
        logged([2.0, 1.5, 1.0, 0.8, *[0.69] * 10], grad_norm=[1.0] * 14),
        evaluated([(0.9, 0.5), (1.0, 0.6), (1.2, 0.6), (1.5, 0.6), (1.9, 0.6), (2.3, 0.6), (2.8, 0.6)]),
    )
    before = TrainerState(global_step=80, log_history=[e for e in whole if e["step"] <= 80])
    before.save_to_json(str(tmp_path / "trainer_state.json"))
    resumed = TrainerState.load_from_json(str(tmp_path / "trainer_state.json"))
    resumed.log_history += [e for e in whole if e["step"] > 80]
    # When both are judged (with what the last process measured)
    measured = health.Measurements(steps=60)
    uninterrupted = health.evaluate(whole, DEFAULTS, facts(), measured)
    restarted = health.evaluate(resumed.log_history, DEFAULTS, facts(), measured)
    # Then the outcomes are the same, firing at the same steps
    assert restarted.as_json() == uninterrupted.as_json()
    assert {r: uninterrupted.rules[r].step for r in uninterrupted.fired()} == {
        "loss_not_decreasing": 140,
        "overfit": 80,
        "overtraining": 100,
    }


def test_early_stopping_resumes_its_patience_from_the_checkpoints_history():
    # Given a checkpoint's history with two evaluations without a better F1 after the best one
    state = SimpleNamespace(
        log_history=[{F1: v, "step": 10 * (i + 1)} for i, v in enumerate([0.5, 0.7, 0.6, 0.7])]
    )
    args = SimpleNamespace(
        metric_for_best_model="f1", greater_is_better=True, load_best_model_at_end=True, eval_strategy="epoch"
    )
    stopper = health.EarlyStopping(early_stopping_patience=3)
    # When the resumed run begins
    stopper.on_train_begin(args, state, SimpleNamespace())
    # Then early stopping counts on from there, as the overtraining rule does
    assert stopper.early_stopping_patience_counter == 2


# --- metric lines and files ------------------------------------------------------------------------------


def _scrape(lines: list[str]) -> dict[str, float]:
    """What the training job's metric definitions read from these lines."""
    found = {}
    for name in contract.HEALTH_METRIC_NAMES:
        for line in lines:
            match = re.search(contract.metric_regex(name), line)
            if match and line.startswith(f"{name}="):
                found[name] = float(match.group(1))
    return found


def test_the_reports_lines_are_read_back_by_the_launchers_regexes_scientific_notation_included():
    # Given a report with a vanishing gradient norm (3.2e-09), a NaN gradient norm and unevaluated rules
    entries = logged([1.0] * 10, grad_norm=[1.0, 3.2e-9, *[1.0] * 7, math.nan])
    report = health.evaluate(entries, DEFAULTS, facts(), health.Measurements(steps=100))
    # When its lines are printed and scraped with the job's regexes
    lines = report.lines()
    scraped = _scrape(lines)
    # Then every finite value is read back exactly as metrics.json has it; NaN prints but is not read
    assert "health_vanishing_gradient_value=3.2e-09" in lines
    assert "health_exploding_gradient_value=nan" in lines
    assert scraped == report.metrics()
    assert scraped["health_vanishing_gradient"] == 1.0 and scraped["health_exploding_gradient"] == 1.0
    assert "health_exploding_gradient_value" not in report.metrics()
    # And the unevaluated rules print nothing and are absent from metrics.json
    evaluated_rules = {rule for rule, outcome in report.rules.items() if outcome.status != "not_evaluated"}
    assert {name for name in scraped if not name.endswith("_value")} == {
        f"health_{r}" for r in evaluated_rules
    }
    assert "overfit" not in evaluated_rules


def test_the_report_section_follows_the_contracts_schema():
    report = health.evaluate(HEALTHY, DEFAULTS, facts(), health.Measurements(steps=200)).as_json()
    json.dumps(report, allow_nan=False)  # strict JSON: no NaN, no infinity
    assert report["parameters"]["loss_not_decreasing_windows"] == 5
    assert report["parameters"]["patience"] == {"value": 3, "from": "--overtraining_patience"}
    for rule, entry in report["rules"].items():
        assert set(entry) == {"status", "value", "threshold", "step", "reason", "advice"}, rule
        assert entry["reason"] and entry["advice"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--loss_not_decreasing_windows", "0"], "--loss_not_decreasing_windows must be 1 or more"),
        (["--data_loading_max_percent", "150"], "--data_loading_max_percent must be between 0 and 100"),
        (
            ["--exploding_gradient_norm", "-1"],
            "--exploding_gradient_norm must be a finite number of at least 0",
        ),
    ],
)
def test_unusable_health_arguments_say_what_to_fix(argv, message):
    with pytest.raises(train.TrainingInputError, match=re.escape(message)):
        train.parse_arguments(argv)


# --- train.py runs --------------------------------------------------------------------------------------


def _deterministic_config(path: Path, *, nan_weights: bool = False) -> Path:
    """The tiny model without dropout, LayerDrop or time masking: with a learning rate of 0 every epoch's loss
    is the same. ``nan_weights``: saved with weights, one of its projections NaN."""
    config = json.loads((TINY_CONFIG / "config.json").read_text())
    config |= {name: 0.0 for name in config if name.endswith("dropout") or name in ("layerdrop",)}
    config |= {
        "hidden_dropout": 0.0,
        "attention_dropout": 0.0,
        "activation_dropout": 0.0,
        "feat_proj_dropout": 0.0,
        "final_dropout": 0.0,
        "layerdrop": 0.0,
        "mask_time_prob": 0.0,
        "apply_spec_augment": False,
    }
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps(config))
    shutil.copy(TINY_CONFIG / "preprocessor_config.json", path)
    if nan_weights:
        torch.manual_seed(0)
        model = AutoModelForAudioClassification.from_config(AutoConfig.from_pretrained(path))
        with torch.no_grad():
            model.wav2vec2.feature_projection.projection.weight.fill_(math.nan)
        model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def one_second_clips(tmp_path_factory: pytest.TempPathFactory) -> SimpleNamespace:
    """Clips of exactly the training window: crops are whole clips, batches need no padding."""
    root = tmp_path_factory.mktemp("clips")
    return SimpleNamespace(
        train=make_audiofolder(root / "train", per_class=4, seed=1, seconds=(1.0, 1.0)),
        validation=make_audiofolder(root / "validation", per_class=1, seed=2, seconds=(1.0, 1.0)),
    )


@pytest.mark.slow
def test_a_run_whose_loss_stays_flat_is_flagged_in_its_lines_metrics_and_report(
    one_second_clips, tmp_path, capsys
):
    # Given a learning rate of 0, no augmentation and no dropout, 16 clips in batches of 8 (two steps an
    # epoch), a logging window per epoch, and loss_not_decreasing comparing the last 2 windows with 2 before
    argv = [
        "--model_name_or_path", str(_deterministic_config(tmp_path / "model-config")),
        "--train_dir", str(one_second_clips.train),
        "--validation_dir", str(one_second_clips.validation),
        "--model_dir", str(tmp_path / "model"),
        "--output_data_dir", str(tmp_path / "output"),
        "--max_length_seconds", "1",
        "--augment", "false",
        "--learning_rate", "0",
        "--num_train_epochs", "4",
        "--per_device_train_batch_size", "8",
        "--logging_steps", "2",
        "--loss_not_decreasing_windows", "2",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    # When it trains
    outcome = train.main(argv)
    # Then metrics.json, the printed lines and evaluation.json all flag it
    metrics = json.loads((tmp_path / "output" / contract.METRICS_FILE).read_text())
    report = json.loads((tmp_path / "output" / contract.EVALUATION_FILE).read_text())[contract.HEALTH_REPORT]
    lines = capsys.readouterr().out.splitlines()
    assert metrics["health_loss_not_decreasing"] == 1.0
    assert _scrape(lines)["health_loss_not_decreasing"] == 1.0
    rule = report["rules"]["loss_not_decreasing"]
    assert (rule["status"], rule["step"], rule["threshold"]) == ("fired", outcome.global_step, 0.1)
    assert abs(rule["value"]) < 0.1
    # And the validation F1 that never improved fired overtraining at the fourth evaluation (patience 3)
    assert report["rules"]["overtraining"]["status"] == "fired"
    assert report["rules"]["overtraining"]["step"] == 8
    # And the model was still saved: a health rule that fired does not fail the job
    assert (tmp_path / "model" / "model.safetensors").is_file()
    assert json.loads((tmp_path / "model" / contract.METRICS_FILE).read_text()) == metrics


@pytest.mark.slow
def test_a_nan_loss_stops_the_job_with_a_clear_error_and_no_model(one_second_clips, tmp_path, source_dir):
    # Given a model whose weights hold NaN, run as SageMaker runs train.py (from the source dir)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    env.pop("PYTHONPATH", None)
    argv = [
        "--model_name_or_path", str(_deterministic_config(tmp_path / "nan-model", nan_weights=True)),
        "--train_dir", str(one_second_clips.train),
        "--validation_dir", str(one_second_clips.validation),
        "--model_dir", str(tmp_path / "model"),
        "--output_data_dir", str(tmp_path / "output"),
        "--checkpoint_dir", str(tmp_path / "checkpoints"),
        "--max_length_seconds", "1",
        "--per_device_train_batch_size", "8",
        "--disable_tqdm", "true",
    ]  # fmt: skip
    # When it runs
    run = subprocess.run(
        [sys.executable, "train.py", *argv],
        cwd=source_dir,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Then it stopped at the first step with an error line, no traceback, after printing the flag
    assert run.returncode == 1, run.stdout[-3000:] + run.stderr[-3000:]
    assert (
        "error: training stopped at step 1: the training loss was nan (health rule nonfinite_loss)"
        in run.stderr
    )
    assert "Traceback" not in run.stderr
    assert "health_nonfinite_loss=1" in run.stdout.splitlines()
    # And it left no model, no reports and no checkpoint: only the curves of the steps it took, to see why
    assert not (tmp_path / "model").exists()
    assert sorted(p.name for p in (tmp_path / "output").iterdir()) == ["training_curves.png"]
    assert not list((tmp_path / "checkpoints").glob("checkpoint-*"))
