"""The promoter and the training job's health: a model whose run tripped a blocking rule waits for a person,
whatever its metrics; other rules that fired are listed. The rules, their flags and the report section are
the contract's (common/contract.py, "Training health")."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from typing import Any

import pytest
from botocore.exceptions import ClientError
from botocore.validate import ParamValidator

from common import contract
from lambdas.promoter import logic
from lambdas.promoter.handler import handler
from lambdas.promoter.settings import Settings, SettingsError
from tests.lambdas import promoter_world
from tests.lambdas.conftest import request_violations
from tests.lambdas.promoter_world import (
    BUCKET,
    ENVIRONMENT,
    GOOD,
    PREFIX,
    THRESHOLDS,
    World,
    approved_model,
    archive,
    training_job,
)

world = promoter_world.world  # the emulated account with the promoter's environment, a fixture

BLOCKING = contract.DEFAULT_BLOCKING_HEALTH_RULES  # loss_not_decreasing, exploding_gradient
ADVICE = "The training loss stopped falling: lower the learning rate, or check that the labels are right."
# evaluation.json's health section as train.py writes it: a blocking rule that fired, another that stayed
# silent, one that could not be evaluated.
HEALTH = {
    "parameters": {"loss_windows": 3},
    "rules": {
        "loss_not_decreasing": {
            "status": "fired",
            "value": 0.004,
            "threshold": 0.01,
            "step": 1200,
            "reason": "the training loss fell 0.4% over the last 3 logging windows",
            "advice": ADVICE,
        },
        "exploding_gradient": {
            "status": "silent",
            "value": 3.2,
            "threshold": 100.0,
            "step": None,
            "reason": "the largest gradient norm was 3.2",
            "advice": "Clip the gradients or lower the learning rate.",
        },
        "gpu_utilization": {
            "status": "not_evaluated",
            "value": None,
            "threshold": 0.3,
            "step": None,
            "reason": "no GPU on this instance",
            "advice": "",
        },
    },
}
TRIPPED = {"health_loss_not_decreasing": 1.0, "health_loss_not_decreasing_value": 0.004}
OVERFIT = {"health_overfit": 1.0, "health_overfit_value": 0.31}


def findings(
    metrics: Mapping[str, float], rules: Mapping[str, Any] | None = None, blocking: tuple[str, ...] = BLOCKING
) -> tuple[logic.HealthFinding, ...]:
    """What the promoter finds in a run: the flags of ``metrics``, the rest from evaluation.json's rules."""
    return logic.health_findings(metrics, HEALTH["rules"] if rules is None else rules, blocking)


def health_gate(
    metrics: Mapping[str, float],
    *,
    approved: tuple[logic.ApprovedModel, ...] = (),
    manual_approval: bool = False,
    blocking: tuple[str, ...] = BLOCKING,
) -> logic.Decision:
    """The gate as the promoter runs it: metrics, the approved models, and the run's health findings."""
    return logic.decide(
        metrics,
        thresholds=THRESHOLDS,
        approved=approved,
        manual_approval=manual_approval,
        health=findings(metrics, blocking=blocking),
    )


# --- settings ---------------------------------------------------------------------------------------


def test_settings_read_the_blocking_health_rules() -> None:
    # Given the environment the stack sets, and one that blocks on no rule
    # When each is validated
    default = Settings.from_environment(ENVIRONMENT)
    none = Settings.from_environment({**ENVIRONMENT, "HEALTH_BLOCKING_RULES": "[]"})

    # Then the rules are typed, in the order given
    assert default.health_blocking_rules == ("loss_not_decreasing", "exploding_gradient")
    assert none.health_blocking_rules == ()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('["overfit", "loss_is_flat"]', "unknown: loss_is_flat"),
        ('["overfit", "overfit"]', "a rule is named twice"),
        ('"overfit"', "expected a JSON list of different training-health rules out of loss_not_decreasing"),
        ("overfit", "not JSON"),
    ],
)
def test_settings_name_unknown_or_repeated_health_rules(value: str, message: str) -> None:
    # Given HEALTH_BLOCKING_RULES naming a rule the contract does not have, a rule twice, or no list
    # When it is validated / Then the error names the variable and what is wrong
    with pytest.raises(SettingsError, match=re.escape("HEALTH_BLOCKING_RULES=")) as raised:
        Settings.from_environment({**ENVIRONMENT, "HEALTH_BLOCKING_RULES": value})
    assert message in str(raised.value)


def test_a_missing_health_blocking_rules_variable_is_named() -> None:
    # Given an environment without HEALTH_BLOCKING_RULES (the stack always sets it)
    environ = {name: value for name, value in ENVIRONMENT.items() if name != "HEALTH_BLOCKING_RULES"}
    # When it is validated / Then it is named as missing
    with pytest.raises(SettingsError, match="HEALTH_BLOCKING_RULES is missing"):
        Settings.from_environment(environ)


# --- reading the health metrics ----------------------------------------------------------------------


def test_health_flags_and_values_are_read_from_metrics_json_and_from_evaluation_json() -> None:
    # Given a flat metrics.json with health flags, and an evaluation.json with only its health section
    flat = {**GOOD, **TRIPPED, "health_overfit": 0.0, "health_unknown_rule": 1.0}
    nested = {"metrics": GOOD, contract.HEALTH_REPORT: HEALTH}

    # When each is read
    from_flat = logic.metrics_from_report(flat)
    from_nested = logic.metrics_from_report(nested)

    # Then the contract's health metrics are kept from either; a rule not evaluated has none
    assert from_flat == {**GOOD, **TRIPPED, "health_overfit": 0.0}
    assert from_nested == {
        **GOOD,
        **TRIPPED,
        "health_exploding_gradient": 0.0,
        "health_exploding_gradient_value": 3.2,
    }


def test_the_report_statuses_the_promoter_reads_are_the_contracts() -> None:
    # Given the statuses evaluation.json may give a rule, and an evaluation.json that is not JSON
    # When the promoter reads a rule's status as its flag, and reads the broken report
    # Then it knows the contract's evaluated statuses, and the broken report gives no health, not an error
    assert set(logic._HEALTH_FLAGS) == set(contract.HEALTH_STATUSES) - {"not_evaluated"}
    assert logic.evaluation_health(b"{not json") == {}
    assert logic.evaluation_health(None) == {}
    assert logic.evaluation_health(json.dumps({"health": HEALTH}).encode()) == HEALTH["rules"]


def test_final_metric_data_keeps_the_health_flags() -> None:
    # Given a FinalMetricDataList with a health flag and its value
    final = logic.metrics_from_final_metric_data(
        [{"MetricName": name, "Value": value} for name, value in {**GOOD, **TRIPPED}.items()]
    )
    # When it is merged with a metrics.json that says the rule stayed silent
    merged = logic.merge_metrics(final, {"health_loss_not_decreasing": 0.0})
    # Then the job's final metric wins, as for every metric
    assert merged["health_loss_not_decreasing"] == 1.0
    assert merged["health_loss_not_decreasing_value"] == 0.004


def test_a_fired_rule_carries_its_threshold_step_and_advice_from_the_report() -> None:
    # Given a blocking rule that fired, per the metrics, and what evaluation.json says of it
    # When the findings are read
    (finding,) = findings({**GOOD, **TRIPPED})

    # Then the rule is blocking, with the measured value, threshold, step and advice
    assert finding == logic.HealthFinding(
        rule="loss_not_decreasing", blocking=True, value=0.004, threshold=0.01, step=1200, advice=ADVICE
    )
    assert finding.describe() == (
        "training health: loss_not_decreasing fired (value 0.004, threshold 0.01, at step 1200; blocking); "
        f"advice: {ADVICE}"
    )


def test_only_flags_equal_to_one_are_findings() -> None:
    # Given a silent blocking rule (0), a fired rule without any report, and one not evaluated (absent)
    metrics = {**GOOD, "health_exploding_gradient": 0.0, **OVERFIT}
    # When the findings are read without an evaluation report
    found = findings(metrics, rules={})
    # Then only the fired rule is one, not blocking, with the value its metric gave
    assert found == (logic.HealthFinding(rule="overfit", blocking=False, value=0.31),)
    assert found[0].describe() == "training health: overfit fired (value 0.31; not blocking)"


# --- the gate ---------------------------------------------------------------------------------------

HELD = (
    "the run tripped the blocking training-health rule(s) loss_not_decreasing (health_blocking_rules): "
    "a person approves or rejects this package"
)


def test_a_blocking_rule_holds_a_passing_model_for_review() -> None:
    # Given metrics above every minimum from a run that tripped loss_not_decreasing (blocking by default)
    # When the gate decides
    decision = health_gate({**GOOD, **TRIPPED})

    # Then the model waits for a person, never Approved: the first reason names the rule, its value and the
    # advice, the last one why a person decides; the quality checks that passed are listed between
    assert decision.status == logic.PENDING
    assert decision.needs_health_review
    assert decision.blocking_health == ("loss_not_decreasing",)
    assert decision.reasons[0].startswith(
        "training health: loss_not_decreasing fired (value 0.004, threshold"
    )
    assert decision.reasons[0].endswith(f"advice: {ADVICE}")
    assert "test_f1 0.8800 is at or above the minimum 0.7500" in decision.reasons
    assert decision.reasons[-1] == HELD


def test_a_blocking_rule_holds_the_model_whatever_the_other_reasons_to_wait() -> None:
    # Given the same run, with manual approval on, or with an approved model the gate cannot compare
    manual = health_gate({**GOOD, **TRIPPED}, manual_approval=True)
    uncomparable = health_gate({**GOOD, **TRIPPED}, approved=(approved_model(accuracy=0.5),))

    # When / Then both wait for a person and say why: the health rule first, then what else holds them
    assert manual.status == uncomparable.status == logic.PENDING
    assert manual.reasons[0] == uncomparable.reasons[0] == findings({**GOOD, **TRIPPED})[0].describe()
    assert manual.reasons[-1] == HELD  # manual approval changes nothing that health has not already
    assert uncomparable.reasons[1].startswith("cannot compare: the approved package")
    assert uncomparable.reasons[-2:] == (
        HELD,
        "the gate cannot compare this model with the approved ones: a person approves or rejects it",
    )


def test_a_non_blocking_rule_is_listed_but_leaves_an_approval_as_it_is() -> None:
    # Given a passing run in which overfit fired (not blocking by default)
    # When the gate decides
    decision = health_gate({**GOOD, **OVERFIT})

    # Then the model is Approved, and the rule is listed as information after the checks
    assert decision.status == logic.APPROVED
    assert not decision.needs_health_review
    assert decision.reasons[-1] == "training health: overfit fired (value 0.31; not blocking)"
    assert decision.reasons[:-1] == health_gate(GOOD).reasons


def test_a_model_below_the_minimums_stays_rejected_whatever_its_health() -> None:
    # Given a run that tripped a blocking and a non-blocking rule, and whose f1 is below its minimum
    # When the gate decides
    decision = health_gate({**GOOD, **TRIPPED, **OVERFIT, "test_f1": 0.4})

    # Then it is Rejected for its f1, and what its run tripped follows as information
    assert decision.status == logic.REJECTED
    assert not decision.needs_health_review
    assert decision.reasons[0] == "test_f1 0.4000 is below the minimum 0.7500"
    assert [reason.split(" fired")[0] for reason in decision.reasons[1:]] == [
        "training health: loss_not_decreasing",
        "training health: overfit",
    ]


@pytest.mark.parametrize(
    ("metrics", "blocking"),
    [
        ({**GOOD, "health_loss_not_decreasing": 0.0}, BLOCKING),  # evaluated and silent
        ({**GOOD, **TRIPPED}, ()),  # health_blocking_rules = []
        ({**GOOD, **TRIPPED}, ("overfit",)),  # another rule blocks
    ],
)
def test_a_rule_holds_a_model_only_when_it_fired_and_blocks(
    metrics: dict[str, float], blocking: tuple[str, ...]
) -> None:
    # Given a passing run whose rule stayed silent, or fired without being one of the blocking rules
    # When the gate decides
    decision = health_gate(metrics, blocking=blocking)
    # Then the model is Approved
    assert decision.status == logic.APPROVED


# --- the package and the message -----------------------------------------------------------------------


def test_the_package_says_what_held_it_within_the_api_rules(service_model: Callable[[str], Any]) -> None:
    # Given a held model whose run also overfit
    settings = Settings.from_environment(ENVIRONMENT)
    metrics = {**GOOD, **TRIPPED, **OVERFIT, "health_exploding_gradient": 0.0}
    decision = health_gate(metrics)

    # When its CreateModelPackage request is built
    request = logic.model_package_request(
        settings=settings,
        job_name=PREFIX + "1",
        model_data_url=f"s3://{BUCKET}/models/{PREFIX}1/output/model.tar.gz",
        evaluation_uri=f"s3://{BUCKET}/evaluation/{PREFIX}1/evaluation.json",
        decision=decision,
        metrics=metrics,
    )

    # Then it is registered PendingManualApproval, its description starts with the rule, and its metadata
    # holds each evaluated rule's flag and the blocking rules that fired, as the API allows
    assert request["ModelApprovalStatus"] == "PendingManualApproval"
    assert request["ModelPackageDescription"].startswith(
        "PendingManualApproval: training health: loss_not_decreasing fired (value 0.004, threshold 0.01"
    )
    properties = request["CustomerMetadataProperties"]
    assert {key: value for key, value in properties.items() if key.startswith("health")} == {
        "health_loss_not_decreasing": "1",
        "health_overfit": "1",
        "health_exploding_gradient": "0",
        "health_blocking": "loss_not_decreasing",
    }
    shape = service_model("sagemaker").operation_model("CreateModelPackage").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert request_violations(request, shape) == []


def test_the_message_of_a_held_model_says_it_needs_review() -> None:
    # Given a held model
    decision = health_gate({**GOOD, **TRIPPED, **OVERFIT})

    # When its message is written
    subject, body = logic.registered_message(
        job_name=PREFIX + "20250302-030012-1a2b3c4d",
        decision=decision,
        model_package_arn="arn:p",
        evaluation_uri="s3://b/e",
        duplicate=False,
    )

    # Then the subject says a review is needed and why, and the body names the rule, the advice, the
    # non-blocking rule and how to approve
    assert subject == f"AcousticShield: {PREFIX}20250302-030012-1a2b3c4d needs review: training health"
    lines = body.splitlines()
    assert lines[0].endswith("Model package: PendingManualApproval.")
    assert lines[1].startswith("Needs review: the run tripped the blocking training-health rule(s) loss_not")
    assert f"- {findings({**GOOD, **TRIPPED})[0].describe()}" in lines
    assert "- training health: overfit fired (value 0.31; not blocking)" in lines
    assert "--model-approval-status Approved" in body


def test_the_review_notice_survives_a_subject_cut_to_100_characters() -> None:
    # Given a held model of a job with SageMaker's longest name (63 characters)
    job = "x" * 63
    # When its message is written
    subject, _ = logic.registered_message(
        job_name=job,
        decision=health_gate({**GOOD, **TRIPPED}),
        model_package_arn="arn:p",
        evaluation_uri=None,
        duplicate=False,
    )
    # Then the job name is shortened, not the notice (SNS allows 100 characters)
    assert len(subject) == 100
    assert subject.endswith("... needs review: training health")


# --- the handler against emulated AWS -----------------------------------------------------------------


def test_a_job_that_tripped_a_blocking_rule_is_registered_for_review(
    world: World, lambda_context: Any
) -> None:
    # Given a completed job whose metrics pass but whose metrics.json says loss_not_decreasing fired, and
    # whose evaluation.json has the rule's report
    event = training_job(
        world,
        PREFIX + "1",
        output=archive(
            {
                "metrics.json": {**GOOD, **TRIPPED},
                "evaluation.json": {"metrics": GOOD, contract.HEALTH_REPORT: HEALTH},
            }
        ),
    )

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the package waits for a person, saying which rule, what it measured and what to do
    assert result["decision"] == "PendingManualApproval"
    assert result["reasons"][0].startswith("training health: loss_not_decreasing fired (value 0.004")
    (package,) = world.packages()
    assert package["ModelApprovalStatus"] == "PendingManualApproval"
    assert package["ModelPackageDescription"].startswith(
        "PendingManualApproval: training health: loss_not_decreasing fired"
    )
    assert "advice: The training loss stopped falling" in package["ModelPackageDescription"]
    assert package["CustomerMetadataProperties"]["health_blocking"] == "loss_not_decreasing"
    assert package["CustomerMetadataProperties"]["health_exploding_gradient"] == "0"  # evaluation.json
    # And the message is a notice of its own kind
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {PREFIX}1 needs review: training health"
    assert ADVICE in message["Message"]


def test_health_flags_from_final_metric_data_hold_the_model_too(world: World, lambda_context: Any) -> None:
    # Given the flag only in the job's FinalMetricDataList (scraped from its log), and an output archive
    # without metrics.json or evaluation.json
    event = training_job(
        world,
        PREFIX + "1",
        final_metrics={**GOOD, "health_exploding_gradient": 1.0, "health_exploding_gradient_value": 812.5},
        output=archive({"confusion_matrix.png": b"png"}),
    )

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the model waits for a person all the same, with the value the job measured
    assert result["decision"] == "PendingManualApproval"
    assert result["reasons"][0] == "training health: exploding_gradient fired (value 812.5; blocking)"
    (message,) = world.messages()
    assert message["Subject"].endswith("needs review: training health")


def test_a_non_blocking_rule_is_listed_on_an_approved_package(world: World, lambda_context: Any) -> None:
    # Given a passing job whose run overfit
    event = training_job(world, PREFIX + "1", metrics={**GOOD, **OVERFIT})

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then it is Approved, and the package and the message list the rule as information
    assert result["decision"] == "Approved"
    (package,) = world.packages()
    assert package["ModelPackageDescription"].endswith(
        "training health: overfit fired (value 0.31; not blocking)"
    )
    assert "health_blocking" not in package["CustomerMetadataProperties"]
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {PREFIX}1 Approved"
    assert "- training health: overfit fired (value 0.31; not blocking)" in message["Message"]


def test_a_rejected_job_stays_rejected_whatever_its_run_tripped(world: World, lambda_context: Any) -> None:
    # Given a job below the f1 minimum whose run tripped a blocking rule
    event = training_job(world, PREFIX + "1", metrics={**GOOD, **TRIPPED, "test_f1": 0.4})

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then it is registered Rejected, with the rule listed after the failure, and no review is asked for
    assert result["decision"] == "Rejected"
    assert result["reasons"][0] == "test_f1 0.4000 is below the minimum 0.7500"
    assert result["reasons"][1].startswith("training health: loss_not_decreasing fired")
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {PREFIX}1 Rejected"


def test_the_retried_message_of_a_held_model_still_says_it_needs_review(
    world: World, lambda_context: Any
) -> None:
    # Given a first delivery that registered a held model but could not publish (the topic was gone)
    event = training_job(world, PREFIX + "1", metrics={**GOOD, **TRIPPED})
    topic_arn = world.sns.list_topics()["Topics"][0]["TopicArn"]
    world.sns.delete_topic(TopicArn=topic_arn)
    with pytest.raises(ClientError, match="NotFound"):
        handler(event, lambda_context)
    world.subscribe(world.sns.create_topic(Name="promotions")["TopicArn"])

    # When EventBridge retries the event
    result = handler(event, lambda_context)

    # Then the repeat, read back from the package, still asks for a review
    assert result["duplicate"] is True
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {PREFIX}1 needs review: training health"
    assert "Repeated event" in message["Message"]
    assert "training health: loss_not_decreasing fired" in message["Message"]


def test_the_kept_evaluation_report_holds_the_whole_health_section(world: World, lambda_context: Any) -> None:
    # Given a held job's evaluation.json with its health section
    event = training_job(
        world,
        PREFIX + "1",
        output=archive(
            {"metrics.json": {**GOOD, **TRIPPED}, "evaluation.json": {"metrics": GOOD, "health": HEALTH}}
        ),
    )
    # When the promoter handles its event
    handler(event, lambda_context)
    # Then the report the package points at keeps the whole health section for whoever reviews it
    body = world.s3.get_object(Bucket=BUCKET, Key=f"evaluation/{PREFIX}1/evaluation.json")["Body"].read()
    assert json.loads(body)["health"] == HEALTH
