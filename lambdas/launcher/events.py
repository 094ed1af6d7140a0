"""The events the launcher accepts, as typed models on Powertools' event-source data classes.

Three shapes reach the function: EventBridge's scheduled event, a manual invocation's payload, and a
dataset manifest's S3 ``Object Created`` event delivered by EventBridge. ``typed_event`` tells them apart
and refuses anything else with an error that says what to send; the models then only read fields that
were checked. Pure: no AWS calls.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.data_classes import EventBridgeEvent, S3EventBridgeNotificationEvent
from aws_lambda_powertools.utilities.data_classes.common import DictWrapper

SCHEDULE_SOURCE = "aws.events"
S3_SOURCE = "aws.s3"
OBJECT_CREATED = "Object Created"


class EventError(ValueError):
    """The triggering event cannot be used; the message says what to send."""


class LaunchOptions(DictWrapper):
    """What a manual invocation (or a schedule's input) may ask for: hyperparameters, a dataset, tuning."""

    @property
    def hyperparameters(self) -> dict[str, Any]:
        """``train.py`` arguments to override (each is checked against the contract by the logic)."""
        overrides = self.get("hyperparameters", {})
        if not isinstance(overrides, dict):
            raise EventError("'hyperparameters' must be an object of name: value")
        return overrides

    @property
    def dataset_prefix(self) -> Any:
        """The dataset to train on (a prefix under ``datasets/``), as sent; None: the configured one."""
        return self.get("dataset_prefix")

    @property
    def tune(self) -> bool | None:
        """Whether to start a tuning job; None: the configuration decides."""
        tune = self.get("tune")
        if tune is not None and not isinstance(tune, bool):
            raise EventError(f"'tune' must be true or false, got {tune!r}")
        return tune

    @property
    def given(self) -> bool:
        """Whether any option is set (an S3 event carries none)."""
        return bool(self.hyperparameters) or self.dataset_prefix is not None or self.tune is not None


class ManualInvocation(LaunchOptions):
    """``{"hyperparameters": {...}, "dataset_prefix": ..., "tune": true|false}``, every field optional."""


class ScheduledEvent(EventBridgeEvent, LaunchOptions):
    """EventBridge's scheduled event (``source: aws.events``); its ``id`` survives redeliveries."""


class NewDataEvent(S3EventBridgeNotificationEvent):
    """A dataset manifest's ``Object Created`` event, sent by the data bucket through EventBridge."""

    @property
    def manifest_version(self) -> str | None:
        """The manifest's version id, else its ETag: a new staging run is a new version."""
        found = self.detail.object
        version = found.version_id or found.get("etag")
        return version if isinstance(version, str) and version else None


LauncherEvent = ScheduledEvent | ManualInvocation | NewDataEvent


def _checked_new_data(event: dict[str, Any]) -> NewDataEvent:
    if event.get("detail-type") != OBJECT_CREATED:
        raise EventError(f"an S3 event must be 'Object Created', got {event.get('detail-type')!r}")
    detail = event.get("detail")
    bucket = detail.get("bucket", {}).get("name") if isinstance(detail, dict) else None
    found = detail.get("object", {}) if isinstance(detail, dict) else {}
    key = found.get("key") if isinstance(found, dict) else None
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise EventError("an S3 event must carry detail.bucket.name and detail.object.key")
    return NewDataEvent(event)


def typed_event(event: Any) -> LauncherEvent:
    """The event as its model; an EventError for anything the launcher does not accept."""
    if not isinstance(event, dict):
        raise EventError(f"the event must be a JSON object, got {type(event).__name__}")
    options = LaunchOptions(event)
    if event.get("source") == S3_SOURCE:
        if options.given:
            raise EventError("an S3 event carries no hyperparameters, dataset_prefix or tune")
        return _checked_new_data(event)
    if event.get("source") == SCHEDULE_SOURCE:
        event_id = event.get("id")
        if not isinstance(event_id, str) or not event_id or not isinstance(event.get("time"), str):
            raise EventError("a scheduled event must carry 'id' and 'time'")
        return ScheduledEvent(event)
    if "source" in event or "detail-type" in event:
        raise EventError(
            f"unexpected event source {event.get('source')!r}; expected a scheduled event or a dataset "
            "manifest's S3 Object Created event"
        )
    return ManualInvocation(event)


def correlation_id(event: Any, request_id: str) -> str:
    """What ties the launch's log lines together: the EventBridge event's ``id``, else the request id."""
    event_id = event.get("id") if isinstance(event, dict) else None
    return event_id if isinstance(event_id, str) and event_id else request_id
