"""The model card the promoter attaches to each model package (CreateModelPackage's ``ModelCard``), validated
against AWS's published model package model card schema (fixtures/README.md says where it comes from): the
emulator stores packages without looking at the card."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.validate import ParamValidator
from jsonschema import Draft202012Validator

from lambdas.promoter import aws, logic, model_card
from lambdas.promoter.handler import handler
from lambdas.promoter.settings import Settings
from tests.lambdas import promoter_world
from tests.lambdas.conftest import ACCOUNT, REGION, request_violations
from tests.lambdas.promoter_world import (
    BUCKET,
    ENVIRONMENT,
    GOOD,
    PREFIX,
    THRESHOLDS,
    TUNING_JOB,
    World,
    approved_model,
    gate,
    training_job,
)

world = promoter_world.world  # the emulated account with the promoter's environment, a fixture

SCHEMA = json.loads((Path(__file__).parent / "fixtures" / "model_package_model_card.schema.json").read_text())
VALIDATOR = Draft202012Validator(SCHEMA)
# The sections the schema allows a model package's card; model_package_details is not one of them.
SECTIONS = set(SCHEMA["properties"])
JOB_NAME = PREFIX + "20260101-000000-1a2b3c4d"
MODEL = f"s3://{BUCKET}/models/{JOB_NAME}/output/model.tar.gz"
EVALUATION = f"s3://{BUCKET}/evaluation/{JOB_NAME}/evaluation.json"
METRICS = {
    **GOOD,
    "eval_accuracy": 0.9,
    "eval_f1": 0.87,
    "eval_loss": 0.31,
    "train_loss": 0.12,
    "health_overfit": 0.0,
}


def described_job(**changes: Any) -> dict[str, Any]:
    """A completed job as DescribeTrainingJob returns it, with its channels and hyperparameters (as the
    launcher sends them, JSON-encoded)."""
    channels = {name: f"s3://{BUCKET}/datasets/esc50/{name}/" for name in ("train", "validation", "test")}
    return {
        "TrainingJobName": JOB_NAME,
        "TrainingJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{JOB_NAME}",
        "TrainingJobStatus": "Completed",
        "AlgorithmSpecification": {
            "TrainingImage": "763104351884.dkr.ecr.us-east-1.amazonaws.com/hf-training:x"
        },
        "HyperParameters": {
            "model_name_or_path": '"facebook/wav2vec2-base"',
            "num_train_epochs": '"4.0"',
            "learning_rate": "3e-05",
            "sagemaker_program": '"train.py"',
            "sagemaker_container_log_level": "20",
        },
        "InputDataConfig": [
            {"ChannelName": name, "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}}}
            for name, uri in channels.items()
        ],
        "ResourceConfig": {"InstanceType": "ml.g5.xlarge", "InstanceCount": 1, "VolumeSizeInGB": 50},
        "TrainingTimeInSeconds": 1234,
        **changes,
    }


def card(
    decision: logic.Decision,
    job: dict[str, Any] | None = None,
    metrics: dict[str, float] | None = None,
    **kw: Any,
) -> dict[str, str]:
    return model_card.package_model_card(
        job=job or described_job(),
        decision=decision,
        metrics=METRICS if metrics is None else metrics,
        thresholds=THRESHOLDS,
        evaluation_uri=EVALUATION,
        model_data_url=MODEL,
        **kw,
    )


def schema_errors(content: dict[str, Any]) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(content)]


# --- the schema ---------------------------------------------------------------------------------------


def test_the_fixture_is_a_json_schema_that_refuses_what_a_package_card_may_not_carry() -> None:
    # Given the copy of AWS's model package model card schema
    Draft202012Validator.check_schema(SCHEMA)
    # When contents a package card may not have are checked / Then the schema refuses them
    assert schema_errors({"model_package_details": {"model_package_arn": "arn"}})
    assert schema_errors({"model_overview": {"model_name": "not in a package's overview"}})
    assert schema_errors({"intended_uses": {"risk_rating": "Severe"}})
    assert schema_errors({"evaluation_details": [{"metric_groups": []}]})  # an evaluation needs a name
    assert {
        "model_overview",
        "intended_uses",
        "business_details",
        "training_details",
        "evaluation_details",
        "additional_information",
    } == SECTIONS


# --- the card -----------------------------------------------------------------------------------------


def test_an_approved_models_card_follows_the_schema_and_carries_the_gates_decision() -> None:
    # Given an approved classification job trained on the esc50 channels
    decision = gate(GOOD)
    # When its card is built
    built = card(decision)
    content = json.loads(built["ModelCardContent"])
    # Then it follows the package card schema, within the API's length, and is approved with the package
    assert schema_errors(content) == []
    assert len(built["ModelCardContent"]) <= model_card.CONTENT_LIMIT
    assert built["ModelCardStatus"] == "Approved"
    assert set(content) <= SECTIONS
    # And it names the job, the model, the data and the settings
    assert content["model_overview"] == {
        "model_creator": f"AcousticShield training job {JOB_NAME}",
        "model_artifact": [MODEL],
    }
    details = content["training_details"]["training_job_details"]
    assert details["training_arn"].endswith(f":training-job/{JOB_NAME}")
    assert details["training_datasets"] == [f"s3://{BUCKET}/datasets/esc50/train/"]
    assert {"name": "model_name_or_path", "value": "facebook/wav2vec2-base"} in details["hyper_parameters"]
    assert not any(p["name"].startswith("sagemaker_") for p in details["hyper_parameters"])
    assert {m["name"] for m in details["training_metrics"]} == {"train_loss", "health_overfit"}
    # And the gate's evaluation has its decision, every reason and the gated values against their rules
    gate_eval, job_eval = content["evaluation_details"]
    assert gate_eval["name"] == "quality gate"
    assert gate_eval["evaluation_observation"].startswith("Approved: test_accuracy 0.9100 is at or above")
    assert gate_eval["metadata"]["decision"] == "Approved"
    assert gate_eval["metadata"]["metrics_split"] == "test"
    assert gate_eval["metadata"]["evaluation_report"] == EVALUATION
    assert gate_eval["datasets"] == [f"s3://{BUCKET}/datasets/esc50/test/"]
    (gated,) = gate_eval["metric_groups"]
    assert {"name": "accuracy", "type": "number", "value": 0.91, "notes": "minimum 0.8"} in gated[
        "metric_data"
    ]
    # And the job's own evaluation has each split's metrics
    groups = {group["name"]: group["metric_data"] for group in job_eval["metric_groups"]}
    assert {m["name"]: m["value"] for m in groups["validation"]} == {
        "accuracy": 0.9,
        "f1": 0.87,
        "loss": 0.31,
    }
    assert {m["name"] for m in groups["test"]} == {"accuracy", "f1", "clip_accuracy", "loss"}
    assert job_eval["datasets"] == [f"s3://{BUCKET}/datasets/esc50/{s}/" for s in ("validation", "test")]
    # And its intended use, risk and caveats are the task's
    assert content["intended_uses"]["risk_rating"] == "Unknown"
    assert "one label per clip" in content["intended_uses"]["purpose_of_model"]
    assert content["additional_information"]["custom_details"] == {
        "task": "classification",
        "training_job": JOB_NAME,
        "gate_decision": "Approved",
    }


@pytest.mark.parametrize(
    ("decision", "status"),
    [
        (gate(GOOD), "Approved"),
        (gate(GOOD, manual_approval=True), "PendingReview"),
        (gate(GOOD, [approved_model(accuracy=0.5)]), "PendingReview"),  # cannot compare: a person decides
        (gate({**GOOD, "test_accuracy": 0.5}), "Draft"),
        (logic.rejected_without_metrics("the job has no model artifact"), "Draft"),
    ],
)
def test_the_cards_status_follows_the_packages_approval(decision: logic.Decision, status: str) -> None:
    # Given each decision of the gate / When the card is built
    built = card(decision)
    content = json.loads(built["ModelCardContent"])
    # Then its status follows the package's, and its content follows the schema
    assert built["ModelCardStatus"] == status
    assert schema_errors(content) == []
    assert content["evaluation_details"][0]["metadata"]["decision"] == decision.status


def test_a_rejection_without_metrics_names_no_split() -> None:
    # Given a job the gate could not judge, without channels or metrics
    decision = logic.rejected_without_metrics(
        "the job has no model artifact (ModelArtifacts.S3ModelArtifacts)"
    )
    built = card(decision, job={"TrainingJobName": JOB_NAME}, metrics={})
    content = json.loads(built["ModelCardContent"])
    # Then the card says why, names no split, and has only the gate's evaluation
    assert schema_errors(content) == []
    (evaluation,) = content["evaluation_details"]
    assert "metrics_split" not in evaluation["metadata"]
    assert evaluation["evaluation_observation"] == "Rejected: " + decision.reasons[0]
    assert "training_arn" not in content["training_details"]["training_job_details"]


def test_a_speech_models_card_and_a_tuning_winners_card() -> None:
    # Given an asr job (validation only) that won a tuning job
    tuning = logic.TuningResult(
        name=TUNING_JOB,
        arn="arn",
        best_job=JOB_NAME,
        objective="eval_wer",
        objective_value=0.2345678,
        tuned={"learning_rate": "1e-4"},
        counters={"Completed": 4},
    )
    metrics = {"eval_wer": 0.23, "eval_cer": 0.08, "eval_loss": 30.0, "train_loss": 25.0}
    job = described_job(InputDataConfig=[])
    # When its card is built
    content = json.loads(
        card(gate(metrics), job=job, metrics=metrics, task="asr", tuning=tuning)["ModelCardContent"]
    )
    # Then it describes a speech model and names the tuning job and its objective
    assert schema_errors(content) == []
    assert "Transcribes speech" in content["intended_uses"]["purpose_of_model"]
    custom = content["additional_information"]["custom_details"]
    assert (custom["tuning_job"], custom["tuning_objective"]) == (TUNING_JOB, "eval_wer 0.234568")
    assert [g["name"] for g in content["evaluation_details"][1]["metric_groups"]] == ["validation"]


def test_long_and_odd_values_stay_within_the_schema_and_the_apis_length() -> None:
    # Given hundreds of hyperparameters with long multi-line values, long reasons with newlines and many metrics
    job = described_job(
        HyperParameters={f"h{i:03d}": json.dumps("x\n" * 400) for i in range(300)},
        InputDataConfig=[
            {"ChannelName": "train", "DataSource": {"S3DataSource": {"S3Uri": "s3://b/" + "k" * 2000}}}
        ],
    )
    decision = logic.Decision(
        status=logic.REJECTED, reasons=tuple(f"reason {i}\nwith a newline" for i in range(500)), split="test"
    )
    metrics = {f"test_metric_{i:03d}": i / 1000 for i in range(400)} | {
        f"health_m{i:03d}": 1.0 for i in range(100)
    }
    # When the card is built
    built = card(decision, job=job, metrics=metrics, task="x" * 2000)
    content = json.loads(built["ModelCardContent"])
    # Then it still follows the schema, each text on one line within its limit, within the API's length
    assert schema_errors(content) == []
    assert len(built["ModelCardContent"]) <= model_card.CONTENT_LIMIT
    details = content["training_details"]["training_job_details"]
    assert len(details["hyper_parameters"]) == 100 and len(details["training_metrics"]) == 50
    assert all("\n" not in p["value"] and len(p["value"]) <= 255 for p in details["hyper_parameters"])
    assert len(content["evaluation_details"][0]["evaluation_observation"]) <= 2048
    assert all(len(v) <= 1024 for v in content["additional_information"]["custom_details"].values())


def test_a_card_over_the_apis_length_drops_its_longest_lists_first(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given a content limit the full card exceeds
    full = card(gate(GOOD))["ModelCardContent"]
    monkeypatch.setattr(model_card, "CONTENT_LIMIT", len(full) - 1)
    # When the card is built / Then the hyperparameters gave way, and the card still follows the schema
    content = json.loads(card(gate(GOOD))["ModelCardContent"])
    assert "hyper_parameters" not in content["training_details"]["training_job_details"]
    assert "training_metrics" in content["training_details"]["training_job_details"]
    assert schema_errors(content) == []


# --- the request --------------------------------------------------------------------------------------


def test_the_request_with_its_card_is_valid_for_the_sagemaker_api(
    service_model: Callable[[str], Any],
) -> None:
    # Given a pending decision's package request with its card
    decision = gate(GOOD, manual_approval=True)
    built = card(decision)
    request = logic.model_package_request(
        settings=Settings.from_environment(ENVIRONMENT),
        job_name=JOB_NAME,
        model_data_url=MODEL,
        evaluation_uri=EVALUATION,
        decision=decision,
        metrics=METRICS,
        model_card=built,
    )
    # Then botocore and the service's length, enum and pattern rules accept it, the card as built
    shape = service_model("sagemaker").operation_model("CreateModelPackage").input_shape
    report = ParamValidator().validate(request, shape)
    assert not report.has_errors(), report.generate_report()
    assert request_violations(request, shape) == []
    assert request["ModelCard"] == built
    # And a request built without a card has none
    del request["ModelCard"]
    assert "ModelCard" not in logic.model_package_request(
        settings=Settings.from_environment(ENVIRONMENT),
        job_name=JOB_NAME,
        model_data_url=MODEL,
        evaluation_uri=EVALUATION,
        decision=decision,
        metrics=METRICS,
    )


def test_the_promoter_registers_each_package_with_its_card(
    world: World, lambda_context: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given a completed job of the multilabel task, and the requests the promoter sends recorded
    sent: list[dict[str, Any]] = []
    create = aws.create_model_package

    def record(sagemaker: Any, request: dict[str, Any]) -> str:
        sent.append(request)
        return create(sagemaker, request)

    monkeypatch.setattr(aws, "create_model_package", record)
    event = training_job(world, PREFIX + "1", metrics=GOOD, hyperparameters={"task": '"multilabel"'})
    # When the promoter handles its event
    result = handler(event, lambda_context)
    # Then the package was registered with a card that follows the schema and says what the gate decided
    (request,) = sent
    content = json.loads(request["ModelCard"]["ModelCardContent"])
    assert schema_errors(content) == []
    assert (result["decision"], request["ModelCard"]["ModelCardStatus"]) == ("Approved", "Approved")
    assert content["additional_information"]["custom_details"]["task"] == "multilabel"
    assert content["evaluation_details"][0]["metadata"]["decision"] == result["decision"]
    assert content["model_overview"]["model_artifact"] == [
        f"s3://{BUCKET}/models/{PREFIX}1/output/model.tar.gz"
    ]
