"""A notice on the alarms topic whenever the endpoint leaves its normal lifecycle (failed, rolling back)."""

from __future__ import annotations

from dataclasses import dataclass

from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_events as events
from aws_cdk import aws_sns as sns
from constructs import Construct

from ..operations import FIVE_MINUTES, FailureNotices, dead_letter_alarm

# Statuses of a healthy lifecycle. Every other one (Failed, UpdateRollbackFailed, RollingBack, OutOfService,
# and any status SageMaker adds) is a notice. Events spell statuses in upper snake case (IN_SERVICE in the
# documented example); the API's spelling is listed too, so that neither becomes a notice by accident.
NORMAL_STATUSES = [
    *("IN_SERVICE", "CREATING", "UPDATING", "SYSTEM_UPDATING", "DELETING"),
    *("InService", "Creating", "Updating", "SystemUpdating", "Deleting"),
]


@dataclass(frozen=True, kw_only=True)
class FailuresProps:
    """``topic``: where the notices go (the Serving stack's alarms topic)."""

    endpoint_name: str
    topic: sns.ITopic


class EndpointFailures(Construct):
    """The rule "SageMaker Endpoint State Change" (this endpoint, not a normal status) → topic, and an alarm
    on the rule's dead-letter queue."""

    def __init__(self, scope: Construct, construct_id: str, *, props: FailuresProps) -> None:
        super().__init__(scope, construct_id)
        name = props.endpoint_name
        self.notices = FailureNotices(self, "Notices", topic=props.topic)
        field = events.EventField.from_path
        self.rule = self.notices.add(
            "EndpointFailed",
            description=f"Announce failures of endpoint {name}",
            pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Endpoint State Change"],
                detail={"EndpointName": [name], "EndpointStatus": [{"anything-but": NORMAL_STATUSES}]},
            ),
            message=(
                f"AcousticShield endpoint {name} is {field('$.detail.EndpointStatus')} (endpoint config "
                f"{field('$.detail.EndpointConfigName')}). Why: aws sagemaker describe-endpoint --endpoint-name "
                f"{name} --query FailureReason. Logs: log group /aws/sagemaker/Endpoints/{name}. A failed update "
                "rolls the Serving stack back and fails the deploy build; an endpoint left Failed serves nothing: "
                "deploy the last good model package again (README, Roll back by hand)."
            ),
        )
        self.alarms = [
            dead_letter_alarm(
                self,
                "UndeliveredNotices",
                queue=self.notices.dead_letters,
                what=f"Failure notices of endpoint {name} (rule → alarms topic)",
                topic=props.topic,
            )
        ]

    def widgets(self) -> list[cloudwatch.IWidget]:
        """Notices sent and undelivered, and the alarm of the notices' dead-letter queue."""
        return [
            cloudwatch.GraphWidget(
                title="Endpoint failure notices (sent, failed to deliver)",
                left=list(self.notices.metrics()),
                width=12,
            ),
            cloudwatch.GraphWidget(
                title="Undelivered notices (dead-letter queue)",
                left=[
                    self.notices.dead_letters.metric_approximate_number_of_messages_visible(
                        period=FIVE_MINUTES, statistic="Maximum"
                    )
                ],
                width=12,
            ),
        ]
