"""The promoter's events: what it parses, the training jobs it registers nothing for (failed, stopped,
another deployment's, a tuning job's trials) and tuning jobs, of which only the winner is registered."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
from moto.sagemaker.models import sagemaker_backends

from lambdas.promoter import handler as handler_module
from lambdas.promoter import logic
from lambdas.promoter.events import typed_event
from lambdas.promoter.handler import handler
from tests.lambdas import promoter_world
from tests.lambdas.conftest import ACCOUNT, REGION
from tests.lambdas.promoter_world import (
    BUCKET,
    GOOD,
    IMAGE,
    PREFIX,
    TUNING_JOB,
    World,
    logged,
    training_job,
)

world = promoter_world.world  # the emulated account with the promoter's environment, a fixture


# --- the event --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("not an event", "expected an EventBridge event"),
        ({"source": "aws.sagemaker"}, "no 'detail' object"),
        ({"detail": {"TrainingJobStatus": "Completed"}}, "no 'TrainingJobName'"),
        ({"detail": {"TrainingJobName": ""}}, "no 'TrainingJobName'"),
    ],
)
def test_malformed_events_raise_a_clear_value_error(event: Any, message: str) -> None:
    # Given an event that names no training job
    # When / Then parsing says what is missing
    with pytest.raises(ValueError, match=message):
        typed_event(event)


# --- training jobs that register nothing ------------------------------------------------------------


def test_failed_job_is_notified_and_registers_nothing(world: World, lambda_context: Any) -> None:
    # Given a job that failed
    event = training_job(
        world, PREFIX + "1", status="Failed", failure_reason="AlgorithmError: CUDA out of memory"
    )

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then people get the job, status and reason, and no package exists
    assert result == {
        "job": PREFIX + "1",
        "status": "Failed",
        "decision": "NotRegistered",
        "model_package_arn": None,
        "duplicate": False,
        "reasons": ["training job Failed: AlgorithmError: CUDA out of memory"],
        "rules": [],
    }
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {PREFIX}1 Failed"
    assert message["Message"] == (
        f"Training job {PREFIX}1 failed; no model package was registered.\n"
        "Reason: AlgorithmError: CUDA out of memory"
    )
    assert world.packages() == []


def test_stopped_job_is_notified_and_registers_nothing(world: World, lambda_context: Any) -> None:
    # Given a job that was stopped, with no failure reason
    event = training_job(world, PREFIX + "1", status="Stopped")

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then the message says so and nothing is registered
    assert result["decision"] == "NotRegistered"
    assert world.messages()[0]["Message"].endswith("Reason: none given")
    assert world.packages() == []


def test_the_described_status_wins_over_the_event(world: World, lambda_context: Any) -> None:
    # Given an event that claims success for a job that actually failed
    event = training_job(world, PREFIX + "1", status="Failed", failure_reason="boom")
    event["detail"]["TrainingJobStatus"] = "Completed"

    # When the promoter handles it
    result = handler(event, lambda_context)

    # Then DescribeTrainingJob decides
    assert result["decision"] == "NotRegistered"
    assert world.packages() == []


def test_job_of_another_deployment_is_ignored(world: World, lambda_context: Any) -> None:
    # Given an event for a job without this deployment's prefix
    event = training_job(world, "someone-elses-job", metrics=GOOD)

    # When the promoter handles it
    result = handler(event, lambda_context)

    # Then nothing is registered or sent
    assert result["decision"] == "Ignored"
    assert world.packages() == []
    assert world.messages() == []


def test_a_tuning_trial_event_is_ignored(
    world: World, lambda_context: Any, caplog: pytest.LogCaptureFixture
) -> None:
    # Given the completed event of a hyperparameter tuning job's trial
    tuning = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{PREFIX}tune"
    event = training_job(world, PREFIX + "tune-001-1a2b3c4d", metrics=GOOD)
    event["detail"]["TuningJobArn"] = tuning

    # When the promoter handles it
    with caplog.at_level("INFO", logger=handler_module.logger.name):
        result = handler(event, lambda_context)

    # Then nothing is registered or sent, and the log line says why
    assert result["decision"] == "Ignored"
    assert result["reasons"] == [f"a trial of the tuning job {tuning}: trials are not registered"]
    assert world.packages() == []
    assert world.messages() == []
    (record,) = [r for r in caplog.records if r.name == handler_module.logger.name]
    assert logged(record)["reasons"] == result["reasons"]


def test_a_tuning_trial_is_ignored_when_only_the_described_job_says_so(
    world: World, lambda_context: Any
) -> None:
    # Given an event that names only the job (a person re-running the promoter) for a tuning trial
    tuning = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{PREFIX}tune"
    training_job(world, PREFIX + "tune-002-1a2b3c4d", metrics=GOOD)
    job = sagemaker_backends[ACCOUNT][REGION].training_jobs[PREFIX + "tune-002-1a2b3c4d"]
    job.tuning_job_arn = tuning  # type: ignore[attr-defined]

    # When the promoter handles it
    result = handler({"detail": {"TrainingJobName": PREFIX + "tune-002-1a2b3c4d"}}, lambda_context)

    # Then DescribeTrainingJob's TuningJobArn decides: nothing is registered or sent
    assert result["decision"] == "Ignored"
    assert result["reasons"] == [f"a trial of the tuning job {tuning}: trials are not registered"]
    assert world.packages() == []
    assert world.messages() == []


# --- tuning jobs: only the winner is registered -----------------------------------------------------


def trial(world: World, number: int, metrics: Mapping[str, float]) -> dict[str, Any]:
    """A completed trial of TUNING_JOB (named by SageMaker after it) and its training-state event."""
    name = f"{TUNING_JOB}-{number:03d}-0a1b2c3{number}"
    event = training_job(world, name, metrics=metrics, final_metrics={"eval_f1": metrics["test_f1"]})
    arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{TUNING_JOB}"
    sagemaker_backends[ACCOUNT][REGION].training_jobs[name].tuning_job_arn = arn  # type: ignore[attr-defined]
    event["detail"]["TuningJobArn"] = arn
    return event


def tuning_job(
    world: World,
    *,
    status: str = "Completed",
    best: str | None = None,
    tuned: Mapping[str, str] | None = None,
    objective: float = 0.0,
    counters: Mapping[str, int] | None = None,
    failure_reason: str = "",
) -> dict[str, Any]:
    """Creates TUNING_JOB as the launcher would, sets what SageMaker reports when it ends (moto completes
    tuning jobs at once, with a made-up winner), and returns the tuning job's state-change event."""
    world.sagemaker.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=TUNING_JOB,
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "eval_f1"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": {
                "ContinuousParameterRanges": [
                    {
                        "Name": "learning_rate",
                        "MinValue": "1e-5",
                        "MaxValue": "1e-3",
                        "ScalingType": "Logarithmic",
                    }
                ]
            },
        },
        TrainingJobDefinition={
            "AlgorithmSpecification": {
                "TrainingImage": IMAGE.replace("inference", "training"),
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "eval_f1", "Regex": "eval_f1=([0-9.]+)"}],
            },
            "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/training",
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/models/"},
            "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
            "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
        },
    )
    job = sagemaker_backends[ACCOUNT][REGION].hyper_parameter_tuning_jobs[TUNING_JOB]
    job.hyper_parameter_tuning_job_status = status
    job.failure_reason = failure_reason
    job.training_job_status_counters = dict(
        counters
        or {"Completed": 3, "InProgress": 0, "RetryableError": 0, "NonRetryableError": 0, "Stopped": 0}
    )
    job.best_training_job = (
        {
            "TrainingJobName": best,
            "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{best}",
            "TuningJobName": TUNING_JOB,
            "CreationTime": job.creation_time,
            "TrainingJobStatus": "Completed",
            "TunedHyperParameters": dict(tuned or {}),
            "FinalHyperParameterTuningJobObjectiveMetric": {
                "Type": "Maximize",
                "MetricName": "eval_f1",
                "Value": objective,
            },
            "ObjectiveStatus": "Succeeded",
        }
        if best
        else None
    )
    return {
        "version": "0",
        "source": "aws.sagemaker",
        "detail-type": "SageMaker HyperParameter Tuning Job State Change",
        "region": REGION,
        "account": ACCOUNT,
        "detail": {"HyperParameterTuningJobName": TUNING_JOB, "HyperParameterTuningJobStatus": status},
    }


def test_a_completed_tuning_job_registers_only_its_best_trial(world: World, lambda_context: Any) -> None:
    # Given three completed trials, whose own events register nothing
    events = [trial(world, n, {**GOOD, "test_f1": f1}) for n, f1 in ((1, 0.80), (2, 0.90), (3, 0.85))]
    tuning_arn = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:hyper-parameter-tuning-job/{TUNING_JOB}"
    for event in events:
        assert handler(event, lambda_context)["reasons"] == [logic.ignored_trial_reason(tuning_arn)]
        # also when a person re-runs the promoter with the trial's name only
        by_name = handler({"detail": {"TrainingJobName": event["detail"]["TrainingJobName"]}}, lambda_context)
        assert by_name["decision"] == "Ignored"
        assert by_name["reasons"] == [logic.ignored_trial_reason(tuning_arn)]
    assert world.packages() == [] and world.messages() == []
    best = events[1]["detail"]["TrainingJobName"]
    # And the tuning job that ran them, which reports the second as its best
    event = tuning_job(
        world,
        best=best,
        tuned={"learning_rate": "0.000123", "per_device_train_batch_size": "8"},
        objective=0.9,
    )

    # When the promoter handles the tuning job's event
    result = handler(event, lambda_context)

    # Then the winner alone is gated and registered, with the tuning job and the values it chose
    assert result["decision"] == "Approved"
    assert (result["job"], result["tuning_job"]) == (best, TUNING_JOB)
    (package,) = world.packages()
    container = package["InferenceSpecification"]["Containers"][0]
    assert container["ModelDataUrl"] == f"s3://{BUCKET}/models/{best}/output/model.tar.gz"
    metadata = package["CustomerMetadataProperties"]
    assert metadata["training_job"] == best
    assert metadata["tuning_job"] == TUNING_JOB
    assert metadata["tuning_objective"] == "eval_f1 0.9"
    assert metadata["tuned_learning_rate"] == "0.000123"
    assert metadata["tuned_per_device_train_batch_size"] == "8"
    assert metadata["test_f1"] == "0.9"
    # And people are told which trial won, out of how many, on what, with which values
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {best} Approved"
    assert (
        f"Best of 3 completed trial(s) of tuning job {TUNING_JOB}: eval_f1 0.9000; "
        "learning_rate=0.000123, per_device_train_batch_size=8." in message["Message"]
    )


def test_a_redelivered_tuning_event_registers_the_winner_once(world: World, lambda_context: Any) -> None:
    # Given a tuning job whose winner was registered
    best = trial(world, 1, GOOD)["detail"]["TrainingJobName"]
    event = tuning_job(world, best=best, tuned={"learning_rate": "0.0001"}, objective=0.88)
    first = handler(event, lambda_context)

    # When its event arrives again
    second = handler(event, lambda_context)

    # Then the package is reported, not registered again, and nobody is told twice
    assert second["duplicate"] is True and second["model_package_arn"] == first["model_package_arn"]
    assert len(world.packages()) == 1
    assert len(world.messages()) == 1


@pytest.mark.parametrize(
    ("status", "counters", "failure_reason", "first_line"),
    [
        (
            "Completed",
            {"Completed": 0, "NonRetryableError": 3, "Stopped": 0},
            "",
            f"Tuning job {TUNING_JOB} completed without a completed training job; no model package was registered.",
        ),
        (
            "Failed",
            {"Completed": 0, "NonRetryableError": 1},
            "ResourceLimitExceeded: ml.g5.xlarge",
            f"Tuning job {TUNING_JOB} failed; no model package was registered.",
        ),
    ],
)
def test_a_tuning_job_without_a_completed_trial_is_announced(
    world: World,
    lambda_context: Any,
    status: str,
    counters: Mapping[str, int],
    failure_reason: str,
    first_line: str,
) -> None:
    # Given a tuning job that ended without any trial completing
    event = tuning_job(world, status=status, counters=counters, failure_reason=failure_reason)

    # When the promoter handles its event
    result = handler(event, lambda_context)

    # Then nothing is registered, and the failure topic says so with the trials' outcome
    assert result["decision"] == "NotRegistered" and result["tuning_job"] == TUNING_JOB
    assert world.packages() == []
    (message,) = world.messages()
    assert message["Subject"] == f"AcousticShield: {TUNING_JOB} {status} without a model"
    lines = message["Message"].splitlines()
    assert lines[0] == first_line
    assert lines[1] == "Trials: " + ", ".join(f"{c} {s}" for s, c in sorted(counters.items()) if c) + "."
    assert lines[-1] == f"Reason: {failure_reason or 'none given'}"


def test_a_tuning_job_of_another_deployment_is_ignored(world: World, lambda_context: Any) -> None:
    event = {
        "detail": {
            "HyperParameterTuningJobName": "someone-else-hpo-1",
            "HyperParameterTuningJobStatus": "Completed",
        }
    }
    result = handler(event, lambda_context)
    assert result["decision"] == "Ignored" and result["tuning_job"] == "someone-else-hpo-1"
    assert world.packages() == [] and world.messages() == []
