"""The model package's SageMaker model card: CreateModelPackage's ``ModelCard``, from the job and the gate.

A model package carries its own model card (``ModelPackageModelCard``: ``ModelCardContent``, a JSON string of
at most 100,000 characters, and ``ModelCardStatus``). Its content follows the *model package model card
schema* (SageMaker Developer Guide, "Update the Details of a Model Version", section "Model package model card
schema", https://docs.aws.amazon.com/sagemaker/latest/dg/model-registry-details.html#model-card-schema): the
sections ``model_overview`` (``model_creator`` and ``model_artifact`` only), ``intended_uses``,
``business_details``, ``training_details``, ``evaluation_details`` and ``additional_information``, and no
``model_package_details``. tests/lambdas/fixtures/ keeps a copy of that schema, and every card the tests build
is validated against it (the emulator does not check the content).

The card says what the model is for, which job trained it on which data with which settings and metrics, and
what the quality gate decided and why. Pure functions, like ``logic``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from common import contract, lambda_contract

from .logic import APPROVED, PENDING, Decision, TuningResult
from .settings import Thresholds

# ModelCardStatus of each gate decision: a package a person must approve has a card pending review; an approved
# package's card is approved with it; a rejected package's card stays a draft (an archived card could no
# longer be edited, should a person take the model up again).
CARD_STATUS = {APPROVED: "Approved", PENDING: "PendingReview"}
DRAFT = "Draft"
CONTENT_LIMIT = 100_000  # ModelPackageModelCard.ModelCardContent
# The schema's limits: text fields, names, metric and hyperparameter lists, evaluation datasets.
_TEXT, _SHORT_TEXT, _PROPERTY, _NAME, _METRIC_NAME, _VALUE = 2048, 1024, 1024, 63, 255, 255
_MAX_TRAINING_METRICS, _MAX_HYPERPARAMETERS, _MAX_DATASETS, _MAX_ARTIFACTS = 50, 100, 10, 15
UNKNOWN_RISK = "Unknown"
# What each task's model is for; another task (a module of its own) is described by its name.
PURPOSES = {
    lambda_contract.DEFAULT_TASK: "Classifies audio clips: one label per clip out of the labels it was trained on.",
    "multilabel": "Tags audio clips with every label that applies, each at its own threshold.",
    "asr": "Transcribes speech into text with word timings (a CTC model, no language model).",
}
CAVEATS = {
    lambda_contract.DEFAULT_TASK: "It always answers one of its labels: a sound outside them gets the closest "
    'one, with no "none of these" answer; use the confidence to refuse uncertain clips.',
    "multilabel": "Each label's threshold was tuned on the validation split; other data may need others.",
    "asr": "It writes only the characters of its training transcripts, in their spelling.",
}
_SPLIT_NAMES = dict(
    zip(contract.METRIC_SPLITS, (contract.VALIDATION_CHANNEL, contract.TEST_CHANNEL), strict=True)
)


def _text(value: Any, limit: int) -> str:
    """One line within ``limit`` characters (the service matches its patterns line by line)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _channels(job: Mapping[str, Any]) -> dict[str, str]:
    """``{channel: S3 URI}`` of the job's input data (InputDataConfig)."""
    found: dict[str, str] = {}
    for channel in job.get("InputDataConfig") or []:
        uri = ((channel.get("DataSource") or {}).get("S3DataSource") or {}).get("S3Uri")
        if isinstance(channel.get("ChannelName"), str) and isinstance(uri, str):
            found[channel["ChannelName"]] = _text(uri, _SHORT_TEXT)
    return found


def _hyperparameters(job: Mapping[str, Any]) -> list[dict[str, str]]:
    """The job's hyperparameters as train.py received them (JSON-decoded), the framework's own left out."""
    found = []
    for name, raw in sorted((job.get("HyperParameters") or {}).items()):
        if not isinstance(name, str) or name.startswith("sagemaker_"):
            continue
        try:
            decoded = json.loads(raw)
        except (TypeError, ValueError):
            decoded = raw
        value = _text(decoded if isinstance(decoded, str) else json.dumps(decoded), _VALUE)
        if name and value:
            found.append({"name": _text(name, _METRIC_NAME), "value": value})
    return found[:_MAX_HYPERPARAMETERS]


def _metric(name: str, value: float, notes: str = "") -> dict[str, Any]:
    metric: dict[str, Any] = {"name": _text(name, _METRIC_NAME), "type": "number", "value": value}
    if notes:
        metric["notes"] = _text(notes, _SHORT_TEXT)
    return metric


def _finite(metrics: Mapping[str, float]) -> dict[str, float]:
    return {name: float(value) for name, value in sorted(metrics.items()) if math.isfinite(value)}


def _split_metrics(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """``{split: {metric: value}}`` of the evaluated splits' metrics (``eval_f1`` -> validation, f1)."""
    found: dict[str, dict[str, float]] = {}
    for name, value in _finite(metrics).items():
        prefix, _, metric = name.partition("_")
        if prefix in _SPLIT_NAMES and metric:
            found.setdefault(_SPLIT_NAMES[prefix], {})[metric] = value
    return found


def _gate_evaluation(
    decision: Decision, thresholds: Thresholds, channels: Mapping[str, str], evaluation_uri: str
) -> dict[str, Any]:
    """The gate's verdict: its decision and every reason, the gated values against their rules."""
    channel = _SPLIT_NAMES.get(decision.split or "")  # None: the gate found no metrics to judge
    # A validation split held out of the training clips has no channel of its own.
    dataset = (channels.get(channel) or channels.get(contract.TRAIN_CHANNEL)) if channel else None
    metadata = {"decision": decision.status, "evaluation_report": evaluation_uri}
    if channel:
        metadata["metrics_split"] = channel
    if decision.comparison:
        metadata["comparison"] = decision.comparison
    if decision.blocking_health:
        metadata["health_blocking"] = " ".join(decision.blocking_health)
    rules = {rule.metric: rule for rule in thresholds.gate_rules}
    gated = [
        _metric(
            name,
            value,
            f"{rules[name].bound} {rules[name].threshold:g}" if name in rules else "",
        )
        for name, value in decision.gated.items()
        if math.isfinite(value)
    ]
    evaluation: dict[str, Any] = {
        "name": "quality gate",
        "evaluation_observation": _text(f"{decision.status}: " + "; ".join(decision.reasons), _TEXT),
        "metadata": {key: _text(value, _PROPERTY) for key, value in metadata.items()},
    }
    if dataset:
        evaluation["datasets"] = [dataset]
    if gated:
        evaluation["metric_groups"] = [
            {"name": _text(f"gated metrics, {channel}", _NAME), "metric_data": gated}
        ]
    return evaluation


def _job_evaluation(
    metrics: Mapping[str, float], channels: Mapping[str, str], evaluation_uri: str
) -> dict[str, Any] | None:
    """Every metric the job reported for each evaluated split (validation, test); None without any."""
    per_split = _split_metrics(metrics)
    if not per_split:
        return None
    groups = [
        {"name": split, "metric_data": [_metric(name, value) for name, value in values.items()]}
        for split, values in per_split.items()
    ]
    datasets = [channels[split] for split in per_split if split in channels][:_MAX_DATASETS]
    evaluation: dict[str, Any] = {
        "name": "training job evaluation",
        "evaluation_observation": _text(
            "The metrics train.py measured on each evaluated split after training; the full report (per class, "
            f"confusion matrices, error rates) is {evaluation_uri}",
            _TEXT,
        ),
        "metadata": {"evaluation_report": _text(evaluation_uri, _PROPERTY)},
        "metric_groups": groups,
    }
    if datasets:
        evaluation["datasets"] = datasets
    return evaluation


def _training_details(
    job: Mapping[str, Any], metrics: Mapping[str, float], channels: Mapping[str, str]
) -> dict[str, Any]:
    """The job, its data, image, settings and the metrics of the training itself (loss, health flags)."""
    evaluated = {f"{prefix}_" for prefix in _SPLIT_NAMES}
    # A training metric is a name and a number (the schema's training_metric), unlike an evaluation's.
    training_metrics = [
        {"name": _text(name, _METRIC_NAME), "value": value}
        for name, value in _finite(metrics).items()
        if not name.startswith(tuple(evaluated))
    ][:_MAX_TRAINING_METRICS]
    details: dict[str, Any] = {}
    if isinstance(job.get("TrainingJobArn"), str):
        details["training_arn"] = _text(job["TrainingJobArn"], _SHORT_TEXT)
    datasets = [uri for name, uri in channels.items() if name not in _SPLIT_NAMES.values()]
    if datasets:
        details["training_datasets"] = datasets[:_MAX_ARTIFACTS]
    image = (job.get("AlgorithmSpecification") or {}).get("TrainingImage")
    if isinstance(image, str):
        details["training_environment"] = {"container_image": [_text(image, _SHORT_TEXT)]}
    if training_metrics:
        details["training_metrics"] = training_metrics
    hyperparameters = _hyperparameters(job)
    if hyperparameters:
        details["hyper_parameters"] = hyperparameters
    resources = job.get("ResourceConfig") or {}
    observed = [f"training job {job.get('TrainingJobName')}"]
    if resources.get("InstanceType"):
        observed.append(f"on {resources.get('InstanceCount', 1)} x {resources['InstanceType']}")
    if isinstance(job.get("TrainingTimeInSeconds"), int):
        observed.append(f"for {job['TrainingTimeInSeconds']} s")
    return {"training_observations": _text(" ".join(observed), _SHORT_TEXT), "training_job_details": details}


def card_content(
    *,
    job: Mapping[str, Any],
    decision: Decision,
    metrics: Mapping[str, float],
    thresholds: Thresholds,
    evaluation_uri: str,
    model_data_url: str | None = None,
    task: str = lambda_contract.DEFAULT_TASK,
    tuning: TuningResult | None = None,
) -> dict[str, Any]:
    """The card's content (before JSON encoding): what the model is for, how it was trained, how it was
    evaluated and what the gate decided."""
    job_name = str(job.get("TrainingJobName", ""))
    channels = _channels(job)
    overview: dict[str, Any] = {
        "model_creator": _text(f"AcousticShield training job {job_name}", _SHORT_TEXT)
    }
    if model_data_url:
        overview["model_artifact"] = [_text(model_data_url, _SHORT_TEXT)]
    evaluations = [_gate_evaluation(decision, thresholds, channels, evaluation_uri)]
    reported = _job_evaluation(metrics, channels, evaluation_uri)
    if reported:
        evaluations.append(reported)
    custom = {"task": task, "training_job": job_name, "gate_decision": decision.status}
    if tuning is not None:
        custom["tuning_job"] = tuning.name
        if tuning.objective and tuning.objective_value is not None:
            custom["tuning_objective"] = f"{tuning.objective} {tuning.objective_value:.6g}"
    return {
        "model_overview": overview,
        "intended_uses": {
            "purpose_of_model": _text(PURPOSES.get(task, f"An audio model of the task {task}."), _TEXT),
            "intended_uses": _text(
                "Served by an AcousticShield endpoint deployed from this model package (the handler in the "
                "model's code/), on recordings like the training data. The model archive's README.md is its "
                "Hugging Face model card: labels, data, per-class results and training settings.",
                _TEXT,
            ),
            "factors_affecting_model_efficiency": _text(
                "Recordings unlike the training data (other microphones, noise, rooms, speakers, languages or "
                "clip lengths) may score below the evaluated splits.",
                _TEXT,
            ),
            "risk_rating": UNKNOWN_RISK,
            "explanations_for_risk_rating": "Not rated by the training pipeline: the model's reviewer rates it.",
        },
        "training_details": _training_details(job, metrics, channels),
        "evaluation_details": evaluations,
        "additional_information": {
            "caveats_and_recommendations": _text(
                CAVEATS.get(task, "")
                + " The metrics describe the evaluated splits only; the training data's license may bind how "
                "the model can be used (see the model card in the model archive).",
                _TEXT,
            ),
            "custom_details": {key: _text(value, _PROPERTY) for key, value in custom.items()},
        },
    }


def _encoded(content: Mapping[str, Any]) -> str:
    return json.dumps(content, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def package_model_card(
    *,
    job: Mapping[str, Any],
    decision: Decision,
    metrics: Mapping[str, float],
    thresholds: Thresholds,
    evaluation_uri: str,
    model_data_url: str | None = None,
    task: str = lambda_contract.DEFAULT_TASK,
    tuning: TuningResult | None = None,
) -> dict[str, str]:
    """CreateModelPackage's ``ModelCard``: the content as JSON within the API's 100,000 characters (the
    longest lists give way first) and the card's status from the gate's decision (``CARD_STATUS``)."""
    content = card_content(
        job=job,
        decision=decision,
        metrics=metrics,
        thresholds=thresholds,
        evaluation_uri=evaluation_uri,
        model_data_url=model_data_url,
        task=task,
        tuning=tuning,
    )
    encoded = _encoded(content)
    details = content["training_details"]["training_job_details"]
    for optional in ("hyper_parameters", "training_metrics"):
        if len(encoded) <= CONTENT_LIMIT:
            break
        details.pop(optional, None)
        encoded = _encoded(content)
    if len(encoded) > CONTENT_LIMIT:
        content["evaluation_details"] = content["evaluation_details"][:1]
        encoded = _encoded(content)
    return {"ModelCardContent": encoded, "ModelCardStatus": CARD_STATUS.get(decision.status, DRAFT)}
