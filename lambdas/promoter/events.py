"""The events the promoter accepts, as typed models on Powertools' EventBridge event data class.

SageMaker sends a ``SageMaker Training Job State Change`` when a training job finishes (or a rule of it
changes status) and a ``SageMaker HyperParameter Tuning Job State Change`` when a tuning job finishes; a
person re-running one by hand may send only its ``detail``. ``typed_event`` tells them apart and refuses
anything else with an error that says what is missing. Pure: no AWS calls.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent

TRAINING_STATE_CHANGE = "SageMaker Training Job State Change"
TUNING_STATE_CHANGE = "SageMaker HyperParameter Tuning Job State Change"


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class TrainingJobStateChange(EventBridgeEvent):
    """A training job's state change: which job, its status, and its tuning job when it is a trial."""

    @property
    def job_name(self) -> str:
        return str(self.detail["TrainingJobName"])

    @property
    def status(self) -> str | None:
        status = self.detail.get("TrainingJobStatus")
        return status if isinstance(status, str) else None

    @property
    def tuning_job_arn(self) -> str | None:
        """The ``TuningJobArn`` of a tuning job's trial, else None."""
        return _text(self.detail.get("TuningJobArn"))


class TuningJobStateChange(EventBridgeEvent):
    """A hyperparameter tuning job's state change: which tuning job, and its status."""

    @property
    def tuning_job_name(self) -> str:
        return str(self.detail["HyperParameterTuningJobName"])

    @property
    def status(self) -> str | None:
        status = self.detail.get("HyperParameterTuningJobStatus")
        return status if isinstance(status, str) else None


PromoterEvent = TrainingJobStateChange | TuningJobStateChange


def typed_event(event: Any) -> PromoterEvent:
    """The event as its model; a ValueError naming what is missing for anything else."""
    if not isinstance(event, Mapping):
        raise ValueError(f"expected an EventBridge event (a JSON object), got {type(event).__name__}")
    detail = event.get("detail")
    if not isinstance(detail, Mapping):
        raise ValueError(
            "event has no 'detail' object; expected a 'SageMaker Training Job State Change' event "
            "with detail.TrainingJobName"
        )
    if "HyperParameterTuningJobName" in detail:
        if not _text(detail.get("HyperParameterTuningJobName")):
            raise ValueError(
                "event detail has an empty 'HyperParameterTuningJobName'; cannot tell which tuning job"
            )
        return TuningJobStateChange(dict(event))
    if not _text(detail.get("TrainingJobName")):
        raise ValueError("event detail has no 'TrainingJobName'; cannot tell which training job finished")
    return TrainingJobStateChange(dict(event))


def correlation_id(event: Any, request_id: str) -> str:
    """What ties the promotion's log lines together: the EventBridge event's ``id``, else the request id."""
    event_id = event.get("id") if isinstance(event, Mapping) else None
    return event_id if isinstance(event_id, str) and event_id else request_id
