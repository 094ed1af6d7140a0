"""The promoter's quality gate: the metrics it reads, its thresholds, and its decisions against the
approved models, pure and through the handler against emulated AWS."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pytest

from common.lambda_contract import GateRule
from lambdas.promoter import logic
from lambdas.promoter.handler import handler
from lambdas.promoter.settings import Thresholds
from tests.lambdas import promoter_world
from tests.lambdas.promoter_world import (
    BUCKET,
    GOOD,
    GROUP,
    IMAGE,
    PREFIX,
    THRESHOLDS,
    World,
    approved_model,
    gate,
    training_job,
)

world = promoter_world.world  # the emulated account with the promoter's environment, a fixture


# --- metrics ----------------------------------------------------------------------------------------


def test_metrics_are_read_from_flat_and_nested_reports() -> None:
    # Given a nested evaluation report and a flat metrics file
    nested = {"test": {"accuracy": 0.9, "f1": 0.8, "per_class": {"dog": 0.7}}, "eval_clip_accuracy": 0.85}
    flat = {"test_accuracy": 0.5, "train_loss": 0.1, "epoch": 3, "nan_metric": float("nan")}

    # When they are read
    from_nested = logic.metrics_from_report(nested)
    from_flat = logic.metrics_from_report(flat)

    # Then only known metric names are kept, under their flat names
    assert from_nested == {"test_accuracy": 0.9, "test_f1": 0.8, "eval_clip_accuracy": 0.85}
    assert from_flat == {"test_accuracy": 0.5, "train_loss": 0.1}


def test_final_metric_data_wins_over_the_output_archive() -> None:
    # Given the same metric from the job's metric definitions and from metrics.json
    final = logic.metrics_from_final_metric_data(
        [{"MetricName": "test_f1", "Value": 0.8}, {"MetricName": "train:progress", "Value": 100.0}]
    )

    # When they are merged in fallback order
    merged = logic.merge_metrics(final, {"test_f1": 0.1, "test_accuracy": 0.9})

    # Then the first source wins and the second fills the gaps
    assert merged == {"test_f1": 0.8, "train:progress": 100.0, "test_accuracy": 0.9}


# --- the gate ---------------------------------------------------------------------------------------


def test_gate_approves_metrics_above_every_threshold() -> None:
    # Given test metrics above every minimum and no approved model yet
    # When the gate decides
    decision = gate(GOOD)

    # Then the model is approved, with each check stated
    assert decision.status == logic.APPROVED
    assert decision.split == "test"
    assert decision.gated == {"accuracy": 0.91, "f1": 0.88, "clip_accuracy": 0.93}
    assert "test_f1 0.8800 is at or above the minimum 0.7500" in decision.reasons


@pytest.mark.parametrize(
    ("metric", "reason"),
    [
        ("test_accuracy", "test_accuracy 0.5000 is below the minimum 0.8000"),
        ("test_f1", "test_f1 0.5000 is below the minimum 0.7500"),
        ("test_clip_accuracy", "test_clip_accuracy 0.5000 is below the minimum 0.8000"),
    ],
)
def test_gate_rejects_each_metric_below_its_threshold(metric: str, reason: str) -> None:
    # Given one metric below its minimum
    # When the gate decides
    decision = gate({**GOOD, metric: 0.5})

    # Then it rejects for exactly that reason
    assert decision.status == logic.REJECTED
    assert decision.reasons == (reason,)


def test_gate_passes_a_metric_exactly_at_its_threshold() -> None:
    # Given f1 exactly at its minimum (0.75 is not exact in binary floating point)
    # When the gate decides
    decision = gate({**GOOD, "test_f1": 0.75})

    # Then it passes
    assert decision.status == logic.APPROVED


def test_gate_rejects_a_model_worse_than_the_approved_one_beyond_tolerance() -> None:
    # Given an approved model with f1 0.90 and a candidate at 0.88 (0.02 worse, tolerance 0.01)
    approved = [approved_model(accuracy=0.91, f1=0.90, clip_accuracy=0.93)]

    # When the gate decides
    decision = gate(GOOD, approved)

    # Then it rejects, naming the metric, both values, the package and the tolerance
    assert decision.status == logic.REJECTED
    assert decision.reasons == (
        "f1 0.8800 is 0.0200 below the best approved model's 0.9000 (version 1, max_regression 0.0100)",
    )


def test_gate_accepts_a_model_worse_than_the_approved_one_within_tolerance() -> None:
    # Given an approved model 0.005 better on every metric (tolerance 0.01)
    approved = [approved_model(accuracy=0.915, f1=0.885, clip_accuracy=0.935)]

    # When the gate decides
    decision = gate(GOOD, approved)

    # Then it approves
    assert decision.status == logic.APPROVED
    assert any("within max_regression" in reason for reason in decision.reasons)


def test_gate_accepts_a_regression_exactly_at_the_tolerance() -> None:
    # Given a candidate exactly max_regression below the approved model
    approved = [approved_model(accuracy=0.92, f1=0.89, clip_accuracy=0.94)]

    # When the gate decides
    decision = gate(GOOD, approved)

    # Then it approves
    assert decision.status == logic.APPROVED


def test_gate_compares_each_metric_with_its_best_approved_value() -> None:
    # Given three approved models, the best accuracy in one and the best f1 in another, the latest worst
    approved = [
        approved_model(3, accuracy=0.90, f1=0.87, clip_accuracy=0.92),
        approved_model(2, accuracy=0.90, f1=0.90, clip_accuracy=0.92),
        approved_model(1, accuracy=0.93, f1=0.87, clip_accuracy=0.92),
    ]

    # When the gate decides on a model within tolerance of the latest but not of the best
    decision = gate(GOOD, approved)

    # Then each metric is held to its own best
    assert decision.status == logic.REJECTED
    assert decision.reasons == (
        "accuracy 0.9100 is 0.0200 below the best approved model's 0.9300 (version 1, max_regression 0.0100)",
        "f1 0.8800 is 0.0200 below the best approved model's 0.9000 (version 2, max_regression 0.0100)",
    )
    assert decision.comparison == (
        "best of 3 approved test packages: accuracy 0.9300 f1 0.9000 clip_accuracy 0.9200"
    )


def test_gate_cannot_compare_with_an_approved_model_missing_a_metric() -> None:
    # Given an approved package registered by hand, with only accuracy in its metadata
    approved = [approved_model(accuracy=0.5)]

    # When the gate decides, with automatic approval
    decision = gate(GOOD, approved)

    # Then the package waits for a person rather than being compared with nothing
    assert decision.status == logic.PENDING
    assert decision.reasons[0] == (
        f"cannot compare: the approved package {approved[0].arn} has no readable f1, clip_accuracy "
        "in its CustomerMetadataProperties"
    )
    assert decision.reasons[-1] == (
        "the gate cannot compare this model with the approved ones: a person approves or rejects it"
    )


def test_gate_rejects_a_regression_even_when_another_package_cannot_be_compared() -> None:
    # Given a readable approved model the candidate is far below, and one without metrics
    approved = [
        approved_model(2, accuracy=0.99),
        approved_model(1, accuracy=0.99, f1=0.99, clip_accuracy=0.99),
    ]

    # When the gate decides
    decision = gate(GOOD, approved)

    # Then it is rejected: more packages could only raise the best
    assert decision.status == logic.REJECTED
    assert all("below the best approved model's 0.9900 (version 1," in reason for reason in decision.reasons)


def test_gate_compares_only_approved_models_of_the_same_split() -> None:
    # Given a better approved model measured on validation metrics, and one on test metrics
    approved = [
        approved_model(2, split="eval", accuracy=0.99, f1=0.99, clip_accuracy=0.99),
        approved_model(1, split="test", accuracy=0.91, f1=0.88, clip_accuracy=0.93),
    ]

    # When the gate decides on test metrics
    decision = gate(GOOD, approved)

    # Then only the test one is compared, and the other is noted
    assert decision.status == logic.APPROVED
    assert "f1 0.8800 vs best approved 0.8800 (version 1): within max_regression 0.0100" in decision.reasons
    assert "note: 1 approved package(s) measured on eval metrics were not compared" in decision.reasons


def test_gate_falls_back_to_validation_metrics_without_a_test_split() -> None:
    # Given only eval_* metrics
    metrics = {"eval_accuracy": 0.9, "eval_f1": 0.8, "eval_clip_accuracy": 0.85}

    # When the gate decides
    decision = gate(metrics)

    # Then it gates on them
    assert decision.status == logic.APPROVED
    assert decision.split == "eval"
    assert decision.gated == {"accuracy": 0.9, "f1": 0.8, "clip_accuracy": 0.85}


def test_gate_prefers_test_metrics_over_validation_metrics() -> None:
    # Given good validation metrics and a failing test metric
    metrics = {**GOOD, "test_f1": 0.2, "eval_accuracy": 0.99, "eval_f1": 0.99, "eval_clip_accuracy": 0.99}

    # When the gate decides
    decision = gate(metrics)

    # Then the test metrics decide
    assert decision.split == "test"
    assert decision.status == logic.REJECTED


def test_gate_does_not_mix_splits_when_a_test_metric_is_missing() -> None:
    # Given a test split whose clip accuracy was not reported, and a validation one that was
    metrics = {"test_accuracy": 0.9, "test_f1": 0.9, "eval_clip_accuracy": 0.99}

    # When the gate decides
    decision = gate(metrics)

    # Then it rejects for the missing test metric rather than borrowing the validation one
    assert decision.status == logic.REJECTED
    assert decision.reasons == ("test_clip_accuracy is missing from the job's metrics",)


def test_gate_rejects_when_metrics_are_missing() -> None:
    # Given no metrics at all
    # When the gate decides
    decision = gate({})

    # Then it rejects, naming each missing metric, and does not crash
    assert decision.status == logic.REJECTED
    assert decision.reasons == tuple(
        f"eval_{name} is missing from the job's metrics" for name in THRESHOLDS.metrics
    )


def test_gate_rejects_values_that_are_not_fractions() -> None:
    # Given an accuracy reported as a percentage
    # When the gate decides
    decision = gate({**GOOD, "test_accuracy": 91.0})

    # Then it rejects rather than comparing apples with oranges
    assert decision.reasons == ("test_accuracy = 91 is not a fraction between 0 and 1",)


# --- rules in either direction ------------------------------------------------------------------------

# A speech recognition gate: word error rate at most 0.30 (lower is better), on its own.
WER = Thresholds(gate_rules=(GateRule("wer", higher_is_better=False, threshold=0.3),), max_regression=0.01)


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        (0.25, logic.APPROVED, "test_wer 0.2500 is at or below the maximum 0.3000"),
        (0.30, logic.APPROVED, "test_wer 0.3000 is at or below the maximum 0.3000"),
        (0.35, logic.REJECTED, "test_wer 0.3500 is above the maximum 0.3000"),
    ],
)
def test_a_lower_is_better_rule_holds_its_metric_at_or_below_its_maximum(
    value: float, status: str, reason: str
) -> None:
    # Given a gate whose one rule keeps the word error rate at most 0.30, and no approved model yet
    # When the gate decides on a job's test WER
    decision = gate({"test_wer": value, "test_loss": 0.4}, thresholds=WER)

    # Then a WER at or below the maximum passes and one above it is rejected, the reason naming the maximum
    assert decision.status == status
    assert decision.split == "test"
    assert decision.gated == {"wer": value}
    assert decision.reasons[0] == reason


def test_rules_of_both_directions_gate_one_model_together() -> None:
    # Given a gate with a minimum mAP and a maximum WER
    rules = Thresholds(
        gate_rules=(GateRule("map", True, 0.5), GateRule("wer", False, 0.3)), max_regression=0.01
    )

    # When the gate decides on validation metrics that miss both
    decision = gate({"eval_map": 0.42, "eval_wer": 0.35}, thresholds=rules)

    # Then each is rejected in its own direction, in the rules' order
    assert decision.status == logic.REJECTED
    assert decision.reasons == (
        "eval_map 0.4200 is below the minimum 0.5000",
        "eval_wer 0.3500 is above the maximum 0.3000",
    )


@pytest.mark.parametrize(
    ("value", "status", "reason"),
    [
        (
            0.265,
            logic.REJECTED,
            "wer 0.2650 is 0.0150 above the best approved model's 0.2500 (version 2, max_regression 0.0100)",
        ),
        (
            0.26,
            logic.APPROVED,
            "wer 0.2600 vs best approved 0.2500 (version 2): within max_regression 0.0100",
        ),
        (
            0.20,
            logic.APPROVED,
            "wer 0.2000 vs best approved 0.2500 (version 2): within max_regression 0.0100",
        ),
    ],
)
def test_a_lower_is_better_metric_may_not_rise_beyond_max_regression_above_the_best_approved(
    value: float, status: str, reason: str
) -> None:
    # Given two approved models with WER 0.28 and 0.25: the best is the lowest
    approved = [approved_model(1, thresholds=WER, wer=0.28), approved_model(2, thresholds=WER, wer=0.25)]

    # When the gate decides on a candidate under the maximum of 0.30
    decision = gate({"test_wer": value}, approved, thresholds=WER)

    # Then a WER more than max_regression above the best is rejected, one within it (or better) approved
    assert decision.status == status
    assert reason in decision.reasons
    assert decision.comparison == "best of 2 approved test packages: wer 0.2500"


def test_the_gate_reads_the_rules_metrics_from_the_job_and_the_approved_packages() -> None:
    # Given a WER gate, a job that reports WER on its validation split only, and an approved package whose
    # metadata holds WER but none of the classification metrics
    approved = [approved_model(1, split="eval", thresholds=WER, wer=0.25)]

    # When the gate decides
    decision = gate({"eval_wer": 0.255, "test_accuracy": 0.1}, approved, thresholds=WER)

    # Then the split comes from the rules' metrics (a test metric no rule names does not count), and the
    # package is compared on WER alone
    assert decision.split == "eval"
    assert decision.status == logic.APPROVED
    assert approved[0].unreadable == ()
    assert "wer 0.2550 vs best approved 0.2500 (version 1): within max_regression 0.0100" in decision.reasons


def test_manual_mode_holds_a_passing_model_for_approval() -> None:
    # Given manual approval and passing metrics
    # When the gate decides
    decision = gate(GOOD, manual_approval=True)

    # Then the package waits for a person
    assert decision.status == logic.PENDING
    assert decision.passed


def test_manual_mode_still_rejects_a_failing_model() -> None:
    # Given manual approval and a failing metric
    # When the gate decides
    decision = gate({**GOOD, "test_accuracy": 0.1}, manual_approval=True)

    # Then it is rejected outright
    assert decision.status == logic.REJECTED


def test_approved_metrics_are_read_back_from_package_metadata() -> None:
    # Given an approved package's metadata, one value unparsable, one not a fraction, one absent
    package = {
        "ModelPackageArn": "arn:p",
        "ModelPackageVersion": 4,
        "CustomerMetadataProperties": {
            "accuracy": "0.9",
            "f1": "n/a",
            "clip_accuracy": "93",
            "metrics_split": "eval",
        },
    }

    # When it is read as an approved model
    approved = logic.approved_model_from_package(package, THRESHOLDS.gate_rules)

    # Then only the valid gated metrics are kept, and the others are named as unreadable
    assert approved == logic.ApprovedModel(
        arn="arn:p", metrics={"accuracy": 0.9}, split="eval", version=4, unreadable=("f1", "clip_accuracy")
    )
    assert approved.label == "version 4"


# --- the gate's decisions through the handler -------------------------------------------------------


def test_job_below_threshold_is_registered_as_rejected(world: World, lambda_context: Any) -> None:
    # Given a completed job whose f1 is below the minimum
    event = training_job(world, PREFIX + "1", metrics={**GOOD, "test_f1": 0.4})

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the package is registered as Rejected, saying why
    assert result["decision"] == "Rejected"
    assert result["reasons"] == ["test_f1 0.4000 is below the minimum 0.7500"]
    (package,) = world.packages()
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["ModelPackageDescription"] == "Rejected: test_f1 0.4000 is below the minimum 0.7500"
    (message,) = world.messages()
    assert "- test_f1 0.4000 is below the minimum 0.7500" in message["Message"]


def test_job_worse_than_the_approved_model_is_rejected(world: World, lambda_context: Any) -> None:
    # Given an approved model from an earlier job
    first = handler(training_job(world, PREFIX + "1", metrics=GOOD), lambda_context)
    assert first["decision"] == "Approved"
    # And a new job that passes the thresholds but is 0.05 worse on f1
    event = training_job(world, PREFIX + "2", metrics={**GOOD, "test_f1": 0.83})

    # When the promoter handles the new job's event
    result = handler(event, lambda_context)

    # Then the new package is rejected against the approved one, which stays approved
    assert result["decision"] == "Rejected"
    assert result["reasons"] == [
        "f1 0.8300 is 0.0500 below the best approved model's 0.8800 (version 1, max_regression 0.0100)"
    ]
    statuses = {
        p["CustomerMetadataProperties"]["training_job"]: p["ModelApprovalStatus"] for p in world.packages()
    }
    assert statuses == {PREFIX + "1": "Approved", PREFIX + "2": "Rejected"}


def test_manual_approval_registers_a_passing_job_as_pending(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given manual approval is on
    monkeypatch.setenv("MANUAL_APPROVAL", "true")
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles a passing job's event
    result = handler(event, lambda_context)

    # Then the package waits for a person, and the message says how to approve it
    assert result["decision"] == "PendingManualApproval"
    (package,) = world.packages()
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    (message,) = world.messages()
    assert (
        f"--model-package-arn {result['model_package_arn']} --model-approval-status Approved"
        in message["Message"]
    )


# --- the gate against every approved package --------------------------------------------------------


def approve_by_hand(world: World, metadata: Mapping[str, str] | None) -> str:
    """An Approved package registered outside the promoter (by a person, or by an older tool)."""
    request: dict[str, Any] = {
        "ModelPackageGroupName": GROUP,
        "ModelApprovalStatus": "Approved",
        "InferenceSpecification": {
            "Containers": [{"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/models/by-hand/model.tar.gz"}],
            "SupportedContentTypes": ["audio/wav"],
            "SupportedResponseMIMETypes": ["application/json"],
        },
    }
    if metadata is not None:
        request["CustomerMetadataProperties"] = dict(metadata)
    arn: str = world.sagemaker.create_model_package(**request)["ModelPackageArn"]
    return arn


def statuses_by_job(world: World) -> dict[str, str]:
    return {
        p["CustomerMetadataProperties"]["training_job"]: p["ModelApprovalStatus"]
        for p in world.packages()
        if "training_job" in (p.get("CustomerMetadataProperties") or {})
    }


def test_step_by_step_decline_is_bounded_by_the_best_approved_model(
    world: World, lambda_context: Any
) -> None:
    # Given eight weekly jobs, each 0.009 f1 worse than the one before (within max_regression 0.01 of it):
    # f1 0.95, 0.941, ..., 0.887
    weekly_f1 = [round(0.95 - 0.009 * week, 3) for week in range(8)]

    # When the promoter handles each job's event in turn
    decisions = [
        handler(training_job(world, f"{PREFIX}{week}", metrics={**GOOD, "test_f1": f1}), lambda_context)[
            "decision"
        ]
        for week, f1 in enumerate(weekly_f1)
    ]

    # Then only the jobs within max_regression of the best approved f1 (0.95) are approved
    assert decisions == ["Approved", "Approved"] + ["Rejected"] * 6
    approved = [f1 for f1, decision in zip(weekly_f1, decisions, strict=True) if decision == "Approved"]
    assert max(approved) - min(approved) <= THRESHOLDS.max_regression
    # And the rejections name the best approved model, not the latest
    third = next(
        p for p in world.packages() if p["CustomerMetadataProperties"]["training_job"] == f"{PREFIX}2"
    )
    assert "f1 0.9320 is 0.0180 below the best approved model's 0.9500" in third["ModelPackageDescription"]


def test_the_best_approved_model_is_found_beyond_the_first_page(world: World, lambda_context: Any) -> None:
    # Given the group's best approved model (f1 0.95), then 100 newer approved ones with f1 0.88
    best = approve_by_hand(
        world, {"metrics_split": "test", "accuracy": "0.91", "f1": "0.95", "clip_accuracy": "0.93"}
    )
    for _ in range(100):
        approve_by_hand(
            world, {"metrics_split": "test", "accuracy": "0.91", "f1": "0.88", "clip_accuracy": "0.93"}
        )
    first_page = world.sagemaker.list_model_packages(
        ModelPackageGroupName=GROUP,
        ModelApprovalStatus="Approved",
        SortBy="CreationTime",
        SortOrder="Descending",
    )
    assert "NextToken" in first_page
    assert best not in {s["ModelPackageArn"] for s in first_page["ModelPackageSummaryList"]}
    # And a new job as good as the latest approved model but 0.07 below the best
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then it is rejected against the best one
    assert result["decision"] == "Rejected"
    assert result["reasons"] == [
        "f1 0.8800 is 0.0700 below the best approved model's 0.9500 (version 1, max_regression 0.0100)"
    ]


EVAL_ONLY = {"eval_accuracy": 0.91, "eval_f1": 0.88, "eval_clip_accuracy": 0.93, "eval_loss": 0.3}


@pytest.mark.parametrize(
    ("approved_metrics", "new_metrics", "approved_split", "new_split"),
    [(EVAL_ONLY, GOOD, "eval", "test"), (GOOD, EVAL_ONLY, "test", "eval")],
    ids=["validation-then-test", "test-then-validation"],
)
def test_metrics_of_different_splits_are_never_compared(
    world: World,
    lambda_context: Any,
    approved_metrics: Mapping[str, float],
    new_metrics: Mapping[str, float],
    approved_split: str,
    new_split: str,
) -> None:
    # Given an approved model gated on one split
    first = handler(training_job(world, PREFIX + "1", metrics=approved_metrics), lambda_context)
    assert first["decision"] == "Approved"
    # And a new job, with automatic approval, that reports only metrics of the other split
    event = training_job(world, PREFIX + "2", metrics=new_metrics)

    # When the promoter handles the new job's event
    result = handler(event, lambda_context)

    # Then the gate cannot compare the two, and a person decides
    assert result["decision"] == "PendingManualApproval"
    reason = (
        f"cannot compare: the approved models were measured on {approved_split} metrics and this one "
        f"on {new_split} metrics, which are never compared"
    )
    assert result["reasons"][0] == reason
    # And the package, its metadata and the message say why
    package = next(p for p in world.packages() if p["ModelPackageArn"] == result["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageDescription"].startswith(f"PendingManualApproval: {reason}")
    assert package["CustomerMetadataProperties"]["comparison"].startswith("cannot compare")
    message = world.messages()[-1]["Message"]
    assert f"- {reason}" in message
    assert "--model-approval-status Approved" in message


@pytest.mark.parametrize(
    ("metadata", "missing"),
    [
        (None, "metrics_split, accuracy, f1, clip_accuracy"),
        ({"accuracy": "0.91", "f1": "0.88", "clip_accuracy": "0.93"}, "metrics_split"),
        ({"metrics_split": "test", "accuracy": "0.91", "f1": "0.88"}, "clip_accuracy"),
        ({"metrics_split": "test", "accuracy": "91", "f1": "0.88", "clip_accuracy": "0.93"}, "accuracy"),
    ],
    ids=["no-metadata", "no-split", "no-clip-accuracy", "accuracy-not-a-fraction"],
)
def test_an_approved_package_without_stored_metrics_cannot_be_compared(
    world: World, lambda_context: Any, metadata: Mapping[str, str] | None, missing: str
) -> None:
    # Given an approved package registered by hand whose metrics the gate cannot read
    arn = approve_by_hand(world, metadata)
    # And a new job that passes every minimum, with automatic approval
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then it waits for a person instead of being compared with nothing
    assert result["decision"] == "PendingManualApproval"
    assert result["reasons"][0] == (
        f"cannot compare: the approved package {arn} has no readable {missing} in its "
        "CustomerMetadataProperties"
    )
    package = next(p for p in world.packages() if p["ModelPackageArn"] == result["model_package_arn"])
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert "cannot compare" in package["ModelPackageDescription"]
    assert package["CustomerMetadataProperties"]["comparison"].startswith("cannot compare")
    assert "cannot compare" in world.messages()[-1]["Message"]


# --- another task's gated metrics ---------------------------------------------------------------------------

# The multilabel task's gate (tasks/multilabel.py gates mAP and micro-F1), as the stack writes GATE_RULES.
MULTILABEL_RULES = (GateRule("map", True, 0.3), GateRule("micro_f1", True, 0.3))
MULTILABEL_GOOD = {"test_map": 0.62, "test_micro_f1": 0.55, "test_loss": 0.2, "train_loss": 0.3}


def test_a_report_keeps_the_gated_metrics_of_the_rules_whatever_the_task() -> None:
    # Given a multilabel job's nested evaluation report and flat metrics file
    nested = {"test": {"map": 0.62, "micro_f1": 0.55, "lwlrap": 0.7}, "eval": {"map": 0.6}}
    flat = {"test_map": 0.5, "eval_micro_f1": 0.4, "train_loss": 0.1}
    gated = [rule.metric for rule in MULTILABEL_RULES]
    # When they are read with the multilabel gate's metrics
    # Then each split's gated metric is kept (and a metric nobody gates or scrapes, lwlrap, is not)
    assert logic.metrics_from_report(nested, gated) == {
        "test_map": 0.62,
        "test_micro_f1": 0.55,
        "eval_map": 0.6,
    }
    assert logic.metrics_from_report(flat, gated) == {
        "test_map": 0.5,
        "eval_micro_f1": 0.4,
        "train_loss": 0.1,
    }
    # And without the rules only the default task's metrics are known, as before
    assert logic.metrics_from_report(nested) == {}


@pytest.fixture
def multilabel_world(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The emulated account, with the promoter of a multilabel deployment."""
    monkeypatch.setenv("GATE_RULES", json.dumps([rule.to_json() for rule in MULTILABEL_RULES]))
    return world


@pytest.mark.parametrize("report", ["flat", "nested"])
def test_a_multilabel_job_above_its_minimums_is_approved_on_its_own_metrics(
    multilabel_world: World, lambda_context: Any, report: str
) -> None:
    # Given a completed multilabel job whose output reports mAP and micro-F1 above the minimums
    evaluation = {"test": {"map": 0.62, "micro_f1": 0.55, "loss": 0.2}, "train_loss": 0.3}
    output = (
        promoter_world.archive({"metrics.json": MULTILABEL_GOOD, "evaluation.json": evaluation})
        if report == "flat"
        else promoter_world.archive({"evaluation.json": evaluation})
    )
    event = training_job(multilabel_world, PREFIX + "1", output=output)
    # When the promoter handles its event
    result = handler(event, lambda_context)
    # Then the gate read test_map and test_micro_f1 and approved the model on them
    assert result["decision"] == "Approved", result["reasons"]
    assert "test_map 0.6200 is at or above the minimum 0.3000" in result["reasons"]
    assert "test_micro_f1 0.5500 is at or above the minimum 0.3000" in result["reasons"]
    # And the package keeps the gated values (what the next gate compares with) and the raw metrics
    (package,) = multilabel_world.packages()
    properties = package["CustomerMetadataProperties"]
    assert (properties["map"], properties["micro_f1"]) == ("0.62", "0.55")
    assert (properties["test_map"], properties["test_micro_f1"]) == ("0.62", "0.55")
    assert properties["metrics_split"] == "test"


def test_a_multilabel_job_below_its_map_minimum_is_rejected(
    multilabel_world: World, lambda_context: Any
) -> None:
    # Given a completed multilabel job whose mAP is below the minimum
    event = training_job(multilabel_world, PREFIX + "1", metrics={**MULTILABEL_GOOD, "test_map": 0.2})
    # When the promoter handles its event
    result = handler(event, lambda_context)
    # Then the package is registered as Rejected, saying why
    assert result["decision"] == "Rejected"
    assert result["reasons"] == ["test_map 0.2000 is below the minimum 0.3000"]
    (package,) = multilabel_world.packages()
    assert package["ModelApprovalStatus"] == "Rejected"
    assert package["CustomerMetadataProperties"]["test_map"] == "0.2"


def test_a_multilabel_job_is_rejected_when_its_report_lacks_the_gated_metrics(
    multilabel_world: World, lambda_context: Any
) -> None:
    # Given a completed job of the multilabel deployment that reports the classification metrics only
    event = training_job(multilabel_world, PREFIX + "1", metrics=GOOD)
    # When the promoter handles its event / Then it is rejected, naming each missing gated metric
    result = handler(event, lambda_context)
    assert result["decision"] == "Rejected"
    assert result["reasons"][:2] == [
        "eval_map is missing from the job's metrics",
        "eval_micro_f1 is missing from the job's metrics",
    ]


def test_a_multilabel_model_whose_map_is_worse_than_the_approved_ones_is_rejected(
    multilabel_world: World, lambda_context: Any
) -> None:
    # Given an approved multilabel model with test mAP 0.62
    first = handler(training_job(multilabel_world, PREFIX + "1", metrics=MULTILABEL_GOOD), lambda_context)
    assert first["decision"] == "Approved", first["reasons"]
    # When a later job reaches mAP 0.50 on the same split, above the minimum but worse than the approved one
    worse = {**MULTILABEL_GOOD, "test_map": 0.5}
    second = handler(training_job(multilabel_world, PREFIX + "2", metrics=worse), lambda_context)
    # Then it is rejected, the reason naming mAP and the approved model it falls behind
    assert second["decision"] == "Rejected"
    (reason,) = [r for r in second["reasons"] if r.startswith("map ")]
    assert "below the best approved model's 0.6200" in reason


# --- the speech recognition task's gate --------------------------------------------------------------------

# The asr task's gate (tasks/asr.py gates WER and CER, lower is better), as the stack writes GATE_RULES at the
# defaults max_wer and max_cer (tests/infra/test_tasks.py checks that it does).
ASR_RULES = (GateRule("wer", False, 0.3), GateRule("cer", False, 0.15))
ASR = Thresholds(gate_rules=ASR_RULES, max_regression=0.01)
ASR_GOOD = {"test_wer": 0.21, "test_cer": 0.08, "test_loss": 0.9, "train_loss": 1.1}
# A job of the asr deployment names its task (the launcher JSON-encodes every hyperparameter).
ASR_JOB = {"task": '"asr"'}


@pytest.mark.parametrize(
    ("wer", "reason"),
    [
        # Insertions take WER above 1: a legitimate, terrible score, rejected against the maximum
        (1.25, "test_wer 1.2500 is above the maximum 0.3000"),
        # A negative error rate is no score at all
        (-0.1, "test_wer = -0.1 is not a number >= 0"),
        (float("inf"), "test_wer is missing from the job's metrics"),
    ],
)
def test_an_error_rate_is_gated_as_a_number_that_may_exceed_one(wer: float, reason: str) -> None:
    # Given the asr gate and a job whose WER is above 1, negative or not finite
    # When the gate decides
    decision = gate({**ASR_GOOD, "test_wer": wer}, thresholds=ASR)
    # Then it is rejected for what the value is: above the maximum, or not a value WER takes
    assert decision.status == logic.REJECTED
    assert decision.reasons[0] == reason
    assert "fraction" not in " ".join(decision.reasons)


def test_approved_error_rates_above_one_are_read_back_and_negative_ones_are_not() -> None:
    # Given approved asr packages: one with a WER above 1 (registered before a stricter maximum), one whose
    # CER is negative, one whose WER is a percentage-like 30
    def package(version: int, **metadata: str) -> dict[str, Any]:
        return {
            "ModelPackageArn": f"arn:p/{version}",
            "ModelPackageVersion": version,
            "CustomerMetadataProperties": {"metrics_split": "test", **metadata},
        }

    # When they are read with the asr rules
    above_one = logic.approved_model_from_package(package(1, wer="1.2", cer="0.4"), ASR_RULES)
    negative = logic.approved_model_from_package(package(2, wer="0.2", cer="-0.1"), ASR_RULES)
    # Then a WER above 1 is a value WER takes, and a negative CER is unreadable
    assert (above_one.metrics, above_one.unreadable) == ({"wer": 1.2, "cer": 0.4}, ())
    assert (negative.metrics, negative.unreadable) == ({"wer": 0.2}, ("cer",))
    # And a classification package's accuracy above 1 still is (a fraction's values end at 1)
    assert logic.approved_model_from_package(
        package(3, accuracy="1.2"), THRESHOLDS.gate_rules
    ).unreadable == (
        "accuracy",
        "f1",
        "clip_accuracy",
    )


@pytest.mark.parametrize(
    ("candidate", "status", "reasons"),
    [
        # WER 0.025 above the best (0.20, not the latest 0.24): rejected, though under the maximum
        (
            {"test_wer": 0.225, "test_cer": 0.08},
            logic.REJECTED,
            [
                "wer 0.2250 is 0.0250 above the best approved model's 0.2000 (version 1, max_regression 0.0100)"
            ],
        ),
        # CER rises too far above its best while WER improves: rejected on CER alone
        (
            {"test_wer": 0.18, "test_cer": 0.1},
            logic.REJECTED,
            [
                "cer 0.1000 is 0.0300 above the best approved model's 0.0700 (version 2, max_regression 0.0100)"
            ],
        ),
        # Lower error rates are better: approved against both bests
        (
            {"test_wer": 0.19, "test_cer": 0.075},
            logic.APPROVED,
            [
                "wer 0.1900 vs best approved 0.2000 (version 1): within max_regression 0.0100",
                "cer 0.0750 vs best approved 0.0700 (version 2): within max_regression 0.0100",
            ],
        ),
    ],
)
def test_an_asr_model_may_not_be_worse_than_the_best_approved_on_either_error_rate(
    candidate: dict[str, float], status: str, reasons: list[str]
) -> None:
    # Given two approved asr models: the lowest WER is version 1's, the lowest CER version 2's
    approved = [
        approved_model(1, thresholds=ASR, wer=0.20, cer=0.09),
        approved_model(2, thresholds=ASR, wer=0.24, cer=0.07),
    ]
    # When the gate decides on a candidate under both maximums
    decision = gate(candidate, approved, thresholds=ASR)
    # Then each error rate is compared with its own best (the lowest), a rise beyond max_regression rejected
    assert decision.status == status
    comparisons = [r for r in decision.reasons if r.startswith(("wer ", "cer "))]
    assert comparisons == reasons
    assert decision.comparison == "best of 2 approved test packages: wer 0.2000 cer 0.0700"


@pytest.mark.parametrize(
    ("hyperparameters", "task"),
    [
        ({}, "classification"),  # the default task's jobs name none
        ({"task": '"asr"'}, "asr"),  # as the launcher (and the SDK) encode it
        ({"task": '"multilabel"', "learning_rate": "3e-05"}, "multilabel"),
        ({"task": "asr"}, "asr"),  # a bare name, as another client might send it
    ],
)
def test_the_task_of_a_job_is_read_from_its_hyperparameters(
    hyperparameters: dict[str, str], task: str
) -> None:
    # Given a described training job / When its task is read / Then it is the job's --task, else the default
    assert logic.job_task({"TrainingJobName": "j", "HyperParameters": hyperparameters}) == task


@pytest.fixture
def asr_world(world: World, monkeypatch: pytest.MonkeyPatch) -> World:
    """The emulated account, with the promoter of an asr deployment."""
    monkeypatch.setenv("GATE_RULES", json.dumps([rule.to_json() for rule in ASR_RULES]))
    return world


def test_an_asr_job_under_its_maximums_is_approved_and_its_package_names_the_task(
    asr_world: World, lambda_context: Any
) -> None:
    # Given a completed job of the asr task whose evaluation reports WER and CER under the maximums
    evaluation = {"test": {"wer": 0.21, "cer": 0.08, "loss": 0.9}, "eval": {"wer": 0.23, "cer": 0.09}}
    output = promoter_world.archive({"evaluation.json": evaluation})
    event = training_job(asr_world, PREFIX + "1", output=output, hyperparameters=ASR_JOB)
    # When the promoter handles its event
    result = handler(event, lambda_context)
    # Then the gate read test_wer and test_cer and approved the model on them, each at or below its maximum
    assert result["decision"] == "Approved", result["reasons"]
    assert "test_wer 0.2100 is at or below the maximum 0.3000" in result["reasons"]
    assert "test_cer 0.0800 is at or below the maximum 0.1500" in result["reasons"]
    # And the package says which task it is, and keeps the gated values and each split's raw error rates
    (package,) = asr_world.packages()
    properties = package["CustomerMetadataProperties"]
    assert properties["task"] == "asr"
    assert (properties["wer"], properties["cer"], properties["metrics_split"]) == ("0.21", "0.08", "test")
    assert (properties["test_wer"], properties["eval_wer"], properties["eval_cer"]) == (
        "0.21",
        "0.23",
        "0.09",
    )
    assert "accuracy" not in properties


def test_an_asr_job_whose_wer_exceeds_one_is_rejected_against_the_maximum(
    asr_world: World, lambda_context: Any
) -> None:
    # Given a completed asr job that inserts so many words that its WER is above 1
    event = training_job(
        asr_world, PREFIX + "1", metrics={**ASR_GOOD, "test_wer": 1.4}, hyperparameters=ASR_JOB
    )
    # When the promoter handles its event
    result = handler(event, lambda_context)
    # Then it is registered as Rejected for being above the maximum, not as a broken report
    assert result["decision"] == "Rejected"
    assert result["reasons"] == ["test_wer 1.4000 is above the maximum 0.3000"]
    (package,) = asr_world.packages()
    assert package["CustomerMetadataProperties"]["wer"] == "1.4"


def test_an_asr_model_whose_wer_is_worse_than_the_approved_ones_is_rejected(
    asr_world: World, lambda_context: Any
) -> None:
    # Given an approved asr model with test WER 0.21
    first = handler(
        training_job(asr_world, PREFIX + "1", metrics=ASR_GOOD, hyperparameters=ASR_JOB), lambda_context
    )
    assert first["decision"] == "Approved", first["reasons"]
    # When a later job reaches WER 0.25 on the same split, under the maximum but higher than the approved one
    worse = {**ASR_GOOD, "test_wer": 0.25}
    second = handler(
        training_job(asr_world, PREFIX + "2", metrics=worse, hyperparameters=ASR_JOB), lambda_context
    )
    # Then it is rejected, the reason naming WER and the approved model it is above
    assert second["decision"] == "Rejected"
    (reason,) = [r for r in second["reasons"] if r.startswith("wer ")]
    assert (
        reason
        == "wer 0.2500 is 0.0400 above the best approved model's 0.2100 (version 1, max_regression 0.0100)"
    )
    # And a job with a lower WER is approved against it
    better = {**ASR_GOOD, "test_wer": 0.19}
    third = handler(
        training_job(asr_world, PREFIX + "3", metrics=better, hyperparameters=ASR_JOB), lambda_context
    )
    assert third["decision"] == "Approved", third["reasons"]
