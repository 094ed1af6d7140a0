"""The promoter as Lambda runs it: its environment, validated at cold start, the errors it lets through
for a retry, its structured log line and the metric it counts."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from botocore.exceptions import ClientError

from common.lambda_contract import GateRule
from lambdas.promoter import handler as handler_module
from lambdas.promoter.handler import handler
from lambdas.promoter.settings import Settings, SettingsError
from tests.lambdas import promoter_world
from tests.lambdas.conftest import cold_start
from tests.lambdas.promoter_world import (
    BAD_GATE_RULES,
    BAD_GATE_RULES_REASONS,
    ENVIRONMENT,
    GOOD,
    GROUP,
    PREFIX,
    THRESHOLDS,
    World,
    logged,
    training_job,
)

world = promoter_world.world  # the emulated account with the promoter's environment, a fixture


# --- settings ---------------------------------------------------------------------------------------


def test_settings_read_every_variable() -> None:
    # Given the environment the stack sets
    # When it is validated
    settings = Settings.from_environment({**ENVIRONMENT, "MANUAL_APPROVAL": "TRUE"})

    # Then every value is typed
    assert settings.thresholds == THRESHOLDS
    assert settings.manual_approval is True
    assert settings.model_package_group == GROUP
    assert settings.evaluation_prefix == "evaluation/"


def test_settings_name_every_missing_or_invalid_variable() -> None:
    # Given an environment with one variable missing and three invalid
    environ = {**ENVIRONMENT, "MAX_REGRESSION": "1.5", "MANUAL_APPROVAL": "yes", "DATA_BUCKET": "s3://bucket"}
    del environ["TOPIC_ARN"]

    # When it is validated
    with pytest.raises(SettingsError) as raised:
        Settings.from_environment(environ)

    # Then the one error names all four, with what to set
    message = str(raised.value)
    assert "TOPIC_ARN is missing" in message
    assert "MAX_REGRESSION='1.5' is invalid: expected a number between 0 and 1" in message
    assert "MANUAL_APPROVAL='yes' is invalid" in message
    assert "DATA_BUCKET='s3://bucket' is invalid" in message


@pytest.mark.parametrize("value", ["nan", "-0.1", "abc"])
def test_settings_reject_thresholds_that_are_not_fractions(value: str) -> None:
    # Given a threshold that is not a number in [0, 1]
    # When / Then validation names it
    with pytest.raises(SettingsError, match="MAX_REGRESSION"):
        Settings.from_environment({**ENVIRONMENT, "MAX_REGRESSION": value})


def test_settings_read_the_gate_rules_in_their_order_and_direction() -> None:
    # Given GATE_RULES with a minimum and a maximum, as the stack writes them (keys sorted)
    environ = {
        **ENVIRONMENT,
        "GATE_RULES": '[{"higher_is_better": true, "metric": "map", "threshold": 0.5}, '
        '{"higher_is_better": false, "metric": "wer", "threshold": 0.3}]',
    }

    # When they are validated
    settings = Settings.from_environment(environ)

    # Then each rule keeps its direction and threshold, in the order given
    assert settings.thresholds.gate_rules == (GateRule("map", True, 0.5), GateRule("wer", False, 0.3))
    assert settings.thresholds.metrics == ("map", "wer")
    # And, without a "fraction" key, the values its direction gives: mAP a fraction, WER an error rate >= 0
    assert [rule.fraction for rule in settings.thresholds.gate_rules] == [True, False]


@pytest.mark.parametrize(
    ("rule", "written"),
    [
        # The rules of the tasks that predate "fraction": written exactly as before, without it
        (GateRule("accuracy", True, 0.5), {"higher_is_better": True, "metric": "accuracy", "threshold": 0.5}),
        (
            GateRule("wer", False, 0.3, fraction=False),
            {"higher_is_better": False, "metric": "wer", "threshold": 0.3},
        ),
        # A metric whose values are not what its direction says names them
        (
            GateRule("eer", False, 0.1, fraction=True),
            {"fraction": True, "higher_is_better": False, "metric": "eer", "threshold": 0.1},
        ),
        (
            GateRule("bleu", True, 20.0, fraction=False),
            {"fraction": False, "higher_is_better": True, "metric": "bleu", "threshold": 20.0},
        ),
    ],
)
def test_a_gate_rule_writes_fraction_only_where_its_direction_does_not_say_it(
    rule: GateRule, written: dict[str, object]
) -> None:
    # Given a gate rule / When it is written as one object of GATE_RULES and read back
    # Then "fraction" appears only where it differs from the direction's default, and the rule is unchanged
    assert rule.to_json() == written
    assert GateRule.from_json(written) == rule


@pytest.mark.parametrize(
    ("rule", "value", "accepted"),
    [
        (GateRule("accuracy", True, 0.5), 0.91, True),
        (GateRule("accuracy", True, 0.5), 91.0, False),  # a percentage is not a fraction
        (GateRule("wer", False, 0.3), 1.25, True),  # insertions take WER above 1
        (GateRule("wer", False, 0.3), 0.0, True),
        (GateRule("wer", False, 0.3), -0.01, False),
        (GateRule("wer", False, 0.3), float("inf"), False),
        (GateRule("eer", False, 0.1, fraction=True), 1.5, False),
    ],
)
def test_a_gate_rule_accepts_the_values_its_metric_takes(
    rule: GateRule, value: float, accepted: bool
) -> None:
    # Given a rule and a job's value of its metric / Then it is one the metric takes, or a broken report
    assert rule.accepts(value) is accepted


@pytest.mark.parametrize("case", sorted(BAD_GATE_RULES))
def test_settings_refuse_bad_gate_rules_naming_the_variable_and_the_reason(case: str) -> None:
    # Given GATE_RULES that is not JSON, not a list, empty, names a metric twice or badly, lacks a
    # direction or has an infinite threshold
    environ = {**ENVIRONMENT, "GATE_RULES": BAD_GATE_RULES[case]}

    # When it is validated
    with pytest.raises(SettingsError) as raised:
        Settings.from_environment(environ)

    # Then the error names the variable, its value, what it should be and what is wrong with it
    message = str(raised.value)
    assert f"GATE_RULES={BAD_GATE_RULES[case]!r} is invalid: expected a JSON list of " in message
    assert BAD_GATE_RULES_REASONS[case] in message


@pytest.mark.parametrize("case", ["not-json", "empty", "duplicate-metric", "bad-name"])
def test_cold_start_in_lambda_fails_on_bad_gate_rules(case: str) -> None:
    # Given a container started with a bad GATE_RULES
    environ = {**ENVIRONMENT, "GATE_RULES": BAD_GATE_RULES[case]}

    # When Lambda loads the handler
    started = cold_start("promoter", environ)

    # Then loading fails before any event, naming the variable and what is wrong
    assert started.returncode != 0
    assert "SettingsError: invalid promoter environment: GATE_RULES=" in started.stderr
    assert BAD_GATE_RULES_REASONS[case] in started.stderr


# --- the handler's environment, errors, logs and metrics --------------------------------------------


def test_aws_errors_propagate_so_the_event_is_retried(world: World, lambda_context: Any) -> None:
    # Given an event for a job SageMaker does not know
    event = {"detail": {"TrainingJobName": PREFIX + "missing", "TrainingJobStatus": "Completed"}}

    # When / Then the service's error reaches the caller
    with pytest.raises(ClientError, match="Could not find training job"):
        handler(event, lambda_context)


def test_bad_environment_fails_naming_the_variable(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a container started without the gate's rules
    monkeypatch.delenv("GATE_RULES")
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When / Then the first invocation fails, naming it
    with pytest.raises(SettingsError, match="GATE_RULES is missing"):
        handler(event, lambda_context)


def test_handler_logs_one_structured_line(
    world: World, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a passing job
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    with caplog.at_level("INFO", logger=handler_module.logger.name):
        result = handler(event, lambda_context)

    # Then one structured line records the outcome, the Lambda context and the event's id as correlation id
    (record,) = [r for r in caplog.records if r.name == handler_module.logger.name]
    line = logged(record)
    assert line["decision"] == result["decision"] == "Approved"
    assert line["function_request_id"] == lambda_context.aws_request_id
    assert line["correlation_id"] == event.get("id", lambda_context.aws_request_id)
    assert line["service"] == "promoter"


def test_handler_logs_at_info_without_any_logging_configured(
    world: World, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given a passing job, and no logging configured (Lambda leaves the root logger at WARNING)
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the handler's own setup lets its one line through, as the launcher's does (empty values left out)
    (record,) = [r for r in caplog.records if r.name == handler_module.logger.name]
    assert record.levelno == logging.INFO and record.getMessage() == "promotion"
    line = logged(record)
    assert {key: line[key] for key in result if result[key] is not None} == {
        key: value for key, value in result.items() if value is not None
    }


def test_each_gate_decision_is_counted_once(world: World, lambda_context: Any, capsys: Any) -> None:
    # Given a passing job whose event is delivered twice
    event = training_job(world, PREFIX + "1", metrics=GOOD)

    # When the promoter handles both deliveries
    first = handler(event, lambda_context)
    second = handler(event, lambda_context)

    # Then one embedded metric counts the approval, in the app's namespace; the redelivery counts nothing
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    assert first["decision"] == "Approved" and second["duplicate"] is True
    counted = [m for m in emf if "ModelApproved" in m]
    assert [m["ModelApproved"] for m in counted] == [[1.0]]
    assert counted[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "AcousticShield"
    assert counted[0]["service"] == "promoter"


def test_cold_start_in_lambda_names_every_bad_variable() -> None:
    # Given a container started with the gate's rules missing and a bucket given as a URI
    environ = {**ENVIRONMENT, "DATA_BUCKET": "s3://bucket"}
    del environ["GATE_RULES"]

    # When Lambda loads the handler
    started = cold_start("promoter", environ)

    # Then loading fails before any event, naming both
    assert started.returncode != 0
    assert "SettingsError: invalid promoter environment: " in started.stderr
    assert "GATE_RULES is missing" in started.stderr
    assert "DATA_BUCKET='s3://bucket' is invalid" in started.stderr
    # And with the environment the stack sets, it loads
    loaded = cold_start("promoter", ENVIRONMENT)
    assert loaded.returncode == 0, loaded.stderr
