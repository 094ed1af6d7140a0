"""Every failure of the training lifecycle alarms on the notifications topic, and one dashboard shows them,
with the training jobs' health rules and their instances' utilization."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_codebuild as codebuild
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from common import contract

from ..operations import (
    FIVE_MINUTES,
    FailureNotices,
    allow_alarm_notifications,
    dead_letter_alarm,
    failure_alarm,
)
from ..python_function import PythonFunction

TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"
# CodeBuild reports a build that ended badly as FAILED (its commands failed), FAULT (CodeBuild itself failed)
# or TIMED_OUT; STOPPED is a person stopping it, which is no failure.
FAILED_BUILD_STATUSES = ["FAILED", "FAULT", "TIMED_OUT"]
# A training job stopped by its StoppingCondition ends with one of these secondary statuses: the primary
# status (Stopped or Failed) does not say why, and the promoter already announces every Failed and Stopped
# job; these say which limit, and need no Lambda to be told.
TIME_LIMIT_STATUSES = ["MaxWaitTimeExceeded", "MaxRuntimeExceeded"]
# Training jobs publish two kinds of metrics to this namespace, every job, without Debugger or Profiler:
# - per instance, dimension Host (<job>/algo-<n>): CPU, memory, disk and GPU utilization (Amazon SageMaker AI
#   metrics in Amazon CloudWatch, "SageMaker AI job metrics");
# - per job, dimension TrainingJobName: what the job's metric definitions scrape from its log, here the
#   contract's metric lines, training health included (Amazon CloudWatch Metrics for Monitoring and
#   Analyzing Training Jobs).
TRAINING_JOB_METRICS = "/aws/sagemaker/TrainingJobs"
JOB_DIMENSION = "TrainingJobName"
INSTANCE_DIMENSION = "Host"
# Percent of all the instance's CPUs (400 with four), of its memory and disk; GPU ones per GPU, summed.
INSTANCE_METRICS = {
    "CPUUtilization": "CPU",
    "MemoryUtilization": "memory",
    "DiskUtilization": "disk",
    "GPUUtilization": "GPU",
    "GPUMemoryUtilization": "GPU memory",
}
SEARCH_STATISTIC = "Maximum"


def job_search(dimension: str, metric_names: Sequence[str], job_name_prefixes: Sequence[str]) -> str:
    """A CloudWatch search for ``metric_names`` of this app's training jobs, whatever each run is named.

    Job names change every run, so no graph can name their dimension values; a search finds them. The
    metric schema ``{namespace,dimension}`` matches the metrics published with exactly that dimension, and
    ``<dimension>=<prefix>`` is a partial match: the prefix's tokens (split at '-') appearing in that order in
    the job name or host (CloudWatch search expression syntax). An exact (quoted) match would need the
    whole name. Single jobs and a tuning job's trials (named after the tuning job) have their own prefixes.
    """
    names = " OR ".join(f'MetricName="{name}"' for name in metric_names)
    if len(metric_names) > 1:
        names = f"({names})"
    term = " OR ".join(f"{dimension}={prefix.rstrip('-')}" for prefix in job_name_prefixes)
    if len(job_name_prefixes) > 1:
        term = f"({term})"
    query = f'{{"{TRAINING_JOB_METRICS}",{dimension}}} {names} {term}'
    return f"SEARCH('{query}', '{SEARCH_STATISTIC}', {int(FIVE_MINUTES.to_seconds())})"


@dataclass(frozen=True)
class WatchedFunction:
    """``title`` names it in alarms ("Launcher"), ``does`` says what a failure interrupts."""

    title: str
    does: str
    handler: PythonFunction


@dataclass(frozen=True)
class WatchedQueue:
    """``what``: whose deliveries land in ``queue`` ("schedule → launcher")."""

    title: str
    what: str
    queue: sqs.IQueue


@dataclass(frozen=True)
class WatchedBuild:
    """A CodeBuild project and the log group its builds write to."""

    title: str
    project: codebuild.IProject
    log_group: logs.ILogGroup


@dataclass(frozen=True, kw_only=True)
class OperationsProps:
    """``key`` encrypts ``topic``: CloudWatch may use it to publish the alarms."""

    job_name_prefix: str
    tuning_job_name_prefix: str  # a tuning job's trials are named after it
    topic: sns.ITopic
    key: kms.Key
    functions: Sequence[WatchedFunction]
    queues: Sequence[WatchedQueue]
    builds: Sequence[WatchedBuild]


class TrainingOperations(Construct):
    """Alarms (dead letters, Lambda errors and throttles), notices (failed builds, training time limits),
    and the operations dashboard."""

    def __init__(self, scope: Construct, construct_id: str, *, props: OperationsProps) -> None:
        super().__init__(scope, construct_id)
        topic = props.topic
        allow_alarm_notifications(topic, props.key)

        self.notices = FailureNotices(self, "Notices", topic=topic)
        self._notify_failed_builds(props.builds)
        prefixes = (props.job_name_prefix, props.tuning_job_name_prefix)
        self._notify_training_time_limits(prefixes)

        self.alarms: list[cloudwatch.Alarm] = []
        queues = [
            *props.queues,
            WatchedQueue("Notices", "failure notice rules → this topic", self.notices.dead_letters),
        ]
        for watched in queues:
            self.alarms.append(
                dead_letter_alarm(
                    self, f"{watched.title}Undelivered", queue=watched.queue, what=watched.what, topic=topic
                )
            )
        for fn in props.functions:
            self.alarms += self._function_alarms(fn, topic)
        self.dashboard = self._dashboard(props, queues)

    def _function_alarms(self, watched: WatchedFunction, topic: sns.ITopic) -> list[cloudwatch.Alarm]:
        function, log_group = watched.handler.function, watched.handler.log_group
        errors = failure_alarm(
            self,
            f"{watched.title}Errors",
            metric=function.metric_errors(period=FIVE_MINUTES, statistic="Sum"),
            description=(
                f"{watched.title} Lambda {function.function_name} failed ({watched.does}). The error and its "
                f"event are in log group {log_group.log_group_name}. EventBridge retries the event; after its "
                "retries it lands in the rule's dead-letter queue (its own alarm)."
            ),
            topic=topic,
        )
        throttles = failure_alarm(
            self,
            f"{watched.title}Throttles",
            metric=function.metric_throttles(period=FIVE_MINUTES, statistic="Sum"),
            description=(
                f"{watched.title} Lambda {function.function_name} was throttled: the account's (or its reserved) "
                "concurrency was used up when an event arrived. Throttled events are retried; if this stays in "
                f"alarm, raise the concurrency quota or look for slow invocations in log group {log_group.log_group_name}."
            ),
            topic=topic,
        )
        return [errors, throttles]

    def _notify_failed_builds(self, builds: Sequence[WatchedBuild]) -> None:
        detail = "$.detail"
        logs_path = f"{detail}.additional-information.logs"
        field = events.EventField.from_path
        self.notices.add(
            "BuildFailed",
            description="Announce failed and timed-out staging and deploy builds",
            pattern=events.EventPattern(
                source=["aws.codebuild"],
                detail_type=["CodeBuild Build State Change"],
                detail={
                    "build-status": FAILED_BUILD_STATUSES,
                    "project-name": [b.project.project_name for b in builds],
                },
            ),
            message=(
                f"AcousticShield build {field(f'{detail}.build-status')}: build {field(f'{detail}.build-id')} of "
                f"project {field(f'{detail}.project-name')} (phase {field(f'{detail}.current-phase')}). "
                f"Logs: log group {field(f'{logs_path}.group-name')}, stream {field(f'{logs_path}.stream-name')}, "
                f"{field(f'{logs_path}.deep-link')}. A deploy build fails when cdk deploy fails or rolls back "
                "(the log ends with the Serving stack's status) or when the endpoint does not serve the approved "
                "model (the verification says what differs). README, Operations, says what to do."
            ),
        )

    def _notify_training_time_limits(self, job_name_prefixes: Sequence[str]) -> None:
        job = events.EventField.from_path("$.detail.TrainingJobName")
        self.notices.add(
            "TrainingTimeLimit",
            description="Announce training jobs stopped at MaxWaitTimeInSeconds or MaxRuntimeInSeconds",
            pattern=events.EventPattern(
                source=["aws.sagemaker"],
                detail_type=["SageMaker Training Job State Change"],
                detail={
                    "TrainingJobName": [{"prefix": prefix} for prefix in job_name_prefixes],
                    "SecondaryStatus": TIME_LIMIT_STATUSES,
                },
            ),
            message=(
                f"AcousticShield training job {job} stopped at a time limit: "
                f"{events.EventField.from_path('$.detail.SecondaryStatus')}. MaxWaitTimeExceeded: spot capacity "
                "did not come within training_max_wait_seconds (raise it, set training_use_spot=false, or choose "
                "another instance type). MaxRuntimeExceeded: training ran past training_max_runtime_seconds "
                f"(raise it or train fewer epochs). Logs: log group {TRAINING_LOG_GROUP}, streams {job}/...; "
                f"details: aws sagemaker describe-training-job --training-job-name {job}"
            ),
        )

    def _by_name(self) -> list[cloudwatch.IAlarm]:
        """The alarms as ARNs built from their names (Ref), not their Arn attribute: same ARNs, and the local
        emulator of `make demo` (moto), which has no alarm resource to read attributes from, can deploy it."""
        stack = cdk.Stack.of(self)
        return [
            cloudwatch.Alarm.from_alarm_arn(
                self,
                f"{alarm.node.id}Arn",
                stack.format_arn(
                    service="cloudwatch",
                    resource="alarm",
                    resource_name=alarm.alarm_name,
                    arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                ),
            )
            for alarm in self.alarms
        ]

    def _dashboard(self, props: OperationsProps, queues: Sequence[WatchedQueue]) -> cloudwatch.Dashboard:
        def graph(title: str, metrics: Sequence[cloudwatch.IMetric]) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=list(metrics), width=12)

        functions = [
            metric.with_(label=f"{fn.title} {name}")
            for fn in props.functions
            for name, metric in (
                ("invocations", fn.handler.function.metric_invocations(period=FIVE_MINUTES)),
                ("errors", fn.handler.function.metric_errors(period=FIVE_MINUTES)),
                ("throttles", fn.handler.function.metric_throttles(period=FIVE_MINUTES)),
            )
        ]
        builds = [
            metric.with_(label=f"{b.title} {name}")
            for b in props.builds
            for name, metric in (
                ("succeeded", b.project.metric_succeeded_builds(period=FIVE_MINUTES)),
                ("failed", b.project.metric_failed_builds(period=FIVE_MINUTES)),
            )
        ]
        letters = [
            q.queue.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum", label=q.title
            )
            for q in queues
        ]
        return cloudwatch.Dashboard(
            self,
            "Dashboard",
            widgets=[
                [cloudwatch.AlarmStatusWidget(title="Failure alarms", alarms=self._by_name(), width=24)],
                [graph("Lambda functions", functions), graph("Builds", builds)],
                [
                    graph("Dead-letter queues (messages waiting)", letters),
                    graph("Failure notices (sent, failed to deliver)", self.notices.metrics()),
                ],
                *self._training_job_rows((props.job_name_prefix, props.tuning_job_name_prefix)),
            ],
        )

    @staticmethod
    def _training_job_rows(job_name_prefixes: Sequence[str]) -> list[list[cloudwatch.IWidget]]:
        """The health rules each job evaluated (flag and measured value) and its instances' utilization."""

        def search(dimension: str, names: Sequence[str], label: str = "") -> cloudwatch.SearchExpression:
            return cloudwatch.SearchExpression(
                expression=job_search(dimension, names, job_name_prefixes), label=label, period=FIVE_MINUTES
            )

        def graph(
            title: str, lines: Sequence[cloudwatch.IMetric], axis: cloudwatch.YAxisProps
        ) -> cloudwatch.GraphWidget:
            return cloudwatch.GraphWidget(title=title, left=list(lines), left_y_axis=axis, width=12)

        flags = [contract.health_metric(rule) for rule in contract.HEALTH_RULES]
        values = [contract.health_value_metric(rule) for rule in contract.HEALTH_RULES]
        instance = {
            name: search(INSTANCE_DIMENSION, [name], label) for name, label in INSTANCE_METRICS.items()
        }
        percent = cloudwatch.YAxisProps(min=0, label="%", show_units=False)
        return [
            [
                graph(
                    "Training health: rules that fired (1) or stayed silent (0), per job",
                    [search(JOB_DIMENSION, flags)],
                    cloudwatch.YAxisProps(min=0, max=1, show_units=False),
                ),
                graph(
                    "Training health: what each rule measured, per job",
                    [search(JOB_DIMENSION, values)],
                    cloudwatch.YAxisProps(show_units=False),
                ),
            ],
            [
                graph(
                    "Training instances: CPU (all cores), memory and disk",
                    [instance[name] for name in ("CPUUtilization", "MemoryUtilization", "DiskUtilization")],
                    percent,
                ),
                graph(
                    "Training instances: GPU and GPU memory (summed over GPUs)",
                    [instance[name] for name in ("GPUUtilization", "GPUMemoryUtilization")],
                    percent,
                ),
            ],
        ]
