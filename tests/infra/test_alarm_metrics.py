"""Every alarm, scaling policy and dashboard graph watches a metric AWS publishes, with the dimensions AWS
publishes it with.

CloudWatch accepts an alarm on any namespace, metric and dimensions: one that no service publishes stays in
INSUFFICIENT_DATA (or OK, with missing data not breaching) forever and never fires. A metric is the exact set of
its dimensions: InvocationFailures of an async endpoint is published per endpoint and variant, so an alarm on
the endpoint alone watches nothing. The table below is AWS's metric documentation for each namespace these
stacks use; each template of each variant is walked against it. A dashboard line may be a CloudWatch search
instead of one metric (training jobs are named anew every run): its metric schema, ``{namespace,dimension,...}``,
and each ``MetricName="..."`` it asks for are walked against the same table.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from common import contract
from infra.app_builder import AcousticShieldApp

from .variants import TEMPLATE_VARIANTS, StackTemplate, stack_templates

Dimensions = frozenset[str]
ENDPOINT_VARIANT: Dimensions = frozenset({"EndpointName", "VariantName"})
ENDPOINT: Dimensions = frozenset({"EndpointName"})
TRAINING_JOB: Dimensions = frozenset({"TrainingJobName"})
TRAINING_HOST: Dimensions = frozenset({"Host"})
INSTANCE_METRICS = (
    "CPUUtilization",
    "MemoryUtilization",
    "GPUUtilization",
    "GPUMemoryUtilization",
    "DiskUtilization",
)


def published(metrics: Iterable[str], *dimensions: Dimensions) -> dict[str, frozenset[Dimensions]]:
    """Each of ``metrics`` is published with each of these sets of dimension names, and with no other."""
    return {metric: frozenset(dimensions) for metric in metrics}


# namespace -> (the AWS documents, {metric: the sets of dimension names AWS publishes it with})
METRIC_DIMENSIONS: dict[str, tuple[str, dict[str, frozenset[Dimensions]]]] = {
    "AWS/SageMaker": (
        "Amazon SageMaker AI metrics in Amazon CloudWatch (endpoint invocation metrics); Alarms and logs for "
        "tracking metrics from asynchronous endpoints; Alarms and logs for tracking metrics from serverless "
        "endpoints; Autoscale an asynchronous endpoint (HasBacklogWithoutCapacity)",
        {
            **published(
                (
                    *("Invocations", "InvocationsPerInstance", "Invocation4XXErrors", "Invocation5XXErrors"),
                    *("InvocationModelErrors", "ModelLatency", "OverheadLatency", "ModelSetupTime"),
                ),
                ENDPOINT_VARIANT,
            ),
            # Async endpoints: the queue is the endpoint's...
            **published(
                (
                    *("ApproximateBacklogSize", "ApproximateBacklogSizePerInstance"),
                    *("ApproximateAgeOfOldestRequest", "HasBacklogWithoutCapacity"),
                ),
                ENDPOINT,
            ),
            # ...the processing of its requests the variant's.
            **published(
                (
                    *("RequestDownloadFailures", "ResponseUploadFailures", "NotificationFailures"),
                    *("RequestDownloadLatency", "ResponseUploadLatency", "ExpiredRequests"),
                    *("InvocationFailures", "TimeInBacklog", "TotalProcessingTime"),
                ),
                ENDPOINT_VARIANT,
            ),
        },
    ),
    "/aws/sagemaker/Endpoints": (
        "Amazon SageMaker AI metrics in Amazon CloudWatch (instance metrics of endpoints)",
        published(INSTANCE_METRICS, ENDPOINT_VARIANT),
    ),
    "/aws/sagemaker/TrainingJobs": (
        "Amazon SageMaker AI metrics in Amazon CloudWatch (instance metrics of training jobs, dimension Host: "
        "<training-job-name>/algo-<instance-number>); Amazon CloudWatch Metrics for Monitoring and Analyzing "
        "Training Jobs (what a job's MetricDefinitions scrape from its log, per job: /aws/sagemaker/TrainingJobs, "
        "TrainingJobName), here the contract's JOB_METRIC_NAMES",
        {
            **published(INSTANCE_METRICS, TRAINING_HOST),
            **published(contract.JOB_METRIC_NAMES, TRAINING_JOB),
        },
    ),
    "AWS/Lambda": (
        "Working with AWS Lambda function metrics (Lambda Developer Guide)",
        published(
            ("Invocations", "Errors", "Throttles", "Duration", "ConcurrentExecutions", "DeadLetterErrors"),
            frozenset({"FunctionName"}),
            frozenset({"FunctionName", "Resource"}),
            frozenset({"FunctionName", "Resource", "ExecutedVersion"}),
        ),
    ),
    "AWS/SQS": (
        "Available CloudWatch metrics for Amazon SQS",
        published(
            (
                *("ApproximateNumberOfMessagesVisible", "ApproximateNumberOfMessagesNotVisible"),
                *("ApproximateNumberOfMessagesDelayed", "ApproximateAgeOfOldestMessage"),
                *("NumberOfMessagesSent", "NumberOfMessagesReceived", "NumberOfMessagesDeleted"),
            ),
            frozenset({"QueueName"}),
        ),
    ),
    "AWS/CodeBuild": (
        "CodeBuild CloudWatch metrics; CodeBuild CloudWatch dimensions (none: the account's builds)",
        published(
            ("Builds", "SucceededBuilds", "FailedBuilds", "Duration", "BuildDuration", "QueuedDuration"),
            frozenset(),
            frozenset({"ProjectName"}),
            frozenset({"BuildId", "BuildNumber", "ProjectName"}),
        ),
    ),
    "AWS/Events": (
        "Monitoring Amazon EventBridge (rules of the default event bus: RuleName; of a custom bus: EventBusName "
        "and RuleName)",
        published(
            (
                *("TriggeredRules", "Invocations", "FailedInvocations", "DeadLetterInvocations"),
                *("InvocationsSentToDlq", "InvocationsFailedToBeSentToDlq", "ThrottledRules"),
            ),
            frozenset({"RuleName"}),
            frozenset({"EventBusName", "RuleName"}),
        ),
    ),
}
# Alarms and logs for tracking metrics from asynchronous endpoints: "Any metric not listed below is not
# published if the endpoint is enabled for asynchronous inference. Such metrics include (but are not limited
# to): OverheadLatency, Invocations, InvocationsPerInstance".
NOT_PUBLISHED_BY_ASYNC_ENDPOINTS = {"OverheadLatency", "Invocations", "InvocationsPerInstance"}

# (where, namespace, metric, dimension names)
MetricUse = tuple[str, str | None, str | None, Dimensions]


def named(dimensions: list[dict[str, Any]]) -> Dimensions:
    return frozenset(d["Name"] for d in dimensions)


def alarm_metrics(alarm: str, props: dict[str, Any]) -> Iterator[MetricUse]:
    """The metric of a single-metric alarm, or each MetricStat of a metric-math alarm."""
    if "MetricName" in props:
        yield (
            f"alarm {alarm}",
            props.get("Namespace"),
            props["MetricName"],
            named(props.get("Dimensions", [])),
        )
    for query in props.get("Metrics", []):
        if "MetricStat" in query:
            metric = query["MetricStat"]["Metric"]
            where = f"alarm {alarm} ({query['Id']})"
            yield (
                where,
                metric.get("Namespace"),
                metric.get("MetricName"),
                named(metric.get("Dimensions", [])),
            )
        elif "Expression" not in query:
            yield f"alarm {alarm} ({query.get('Id')})", None, None, frozenset()


def scaling_metrics(policy: str, props: dict[str, Any]) -> Iterator[MetricUse]:
    """The customized metric of a target-tracking policy (predefined ones are Application Auto Scaling's)."""
    tracking = props.get("TargetTrackingScalingPolicyConfiguration", {})
    metric = tracking.get("CustomizedMetricSpecification")
    if metric and "MetricName" in metric:
        yield (
            f"scaling policy {policy}",
            metric.get("Namespace"),
            metric["MetricName"],
            named(metric.get("Dimensions", [])),
        )
    for query in (metric or {}).get("Metrics", []):
        if "MetricStat" in query:
            stat = query["MetricStat"]["Metric"]
            yield (
                f"scaling policy {policy}",
                stat.get("Namespace"),
                stat.get("MetricName"),
                named(stat.get("Dimensions", [])),
            )


def text(value: Any) -> str:
    """A dashboard body as text: tokens (a Ref, a GetAtt) stand inside JSON strings, so any placeholder does."""
    if isinstance(value, str):
        return value
    ((function, argument),) = value.items()
    if function == "Fn::Join":
        return str(argument[0]).join(text(part) for part in argument[1])
    return f"<{function}>"


# CloudWatch search expression syntax: SEARCH(' {Namespace, DimensionName1, ...} SearchTerm', 'Statistic', Period);
# names in the schema may be double-quoted, the search term may name properties (MetricName="CPUUtilization",
# InstanceType=micro), and an exact value in double quotes escapes " \ ( ) with a backslash.
_SEARCH = re.compile(
    r"SEARCH\(\s*'(?P<query>(?:[^'\\]|\\.)*)'\s*,\s*'(?P<statistic>[^']*)'\s*(?:,\s*(?P<period>\d+)\s*)?\)"
)
_SCHEMA = re.compile(r"^\s*\{(?P<schema>[^}]*)\}(?P<term>.*)$", re.S)
_PROPERTY = re.compile(r'(?<![\w"])(?P<name>[A-Za-z][\w.:-]*)=(?P<value>"(?:[^"\\]|\\.)*"|[^\s()"]+)')
# Properties of a search term that are not dimension names.
_NOT_DIMENSIONS = {"MetricName", "Namespace"}


@dataclass(frozen=True)
class Search:
    """One SEARCH(...) of a dashboard line: its metric schema, the metric names and properties of its term."""

    query: str
    namespace: str | None
    dimensions: Dimensions
    metric_names: tuple[str, ...]
    properties: tuple[str, ...]  # every name=value of the term, MetricName included
    statistic: str
    period: int | None


def _unquoted(name: str) -> str:
    name = name.strip()
    return name[1:-1] if len(name) >= 2 and name[0] == name[-1] == '"' else name


def searches(expression: str) -> list[Search]:
    """Every SEARCH(...) in a metric-math expression (a SUM(SEARCH(...)) included)."""
    found = []
    for match in _SEARCH.finditer(expression):
        query = match["query"]
        schema = _SCHEMA.match(query)
        names = [_unquoted(n) for n in schema["schema"].split(",")] if schema else []
        term = schema["term"] if schema else query
        properties = [(m["name"], _unquoted(m["value"])) for m in _PROPERTY.finditer(term)]
        found.append(
            Search(
                query=query,
                namespace=names[0] if names else None,
                dimensions=frozenset(names[1:]),
                metric_names=tuple(value for name, value in properties if name == "MetricName"),
                properties=tuple(name for name, _ in properties),
                statistic=match["statistic"],
                period=int(match["period"]) if match["period"] else None,
            )
        )
    return found


def dashboard_lines(dashboard: str, props: dict[str, Any]) -> Iterator[tuple[str, list[Any]]]:
    """Each metric line of each graph, with where it is."""
    body = json.loads(text(props["DashboardBody"]))
    for widget in body["widgets"]:
        properties = widget.get("properties", {})
        for line in properties.get("metrics", []):
            yield f"dashboard {dashboard} ({properties.get('title')})", line


def dashboard_metrics(dashboard: str, props: dict[str, Any]) -> Iterator[MetricUse]:
    """Each metric line of each graph: [namespace, metric, name, value, ..., {options}]; a search line as
    each metric name it asks for, with the dimensions of its schema (none named: a use the table lacks)."""
    for where, line in dashboard_lines(dashboard, props):
        expressions = [part["expression"] for part in line if isinstance(part, dict) and "expression" in part]
        if not expressions:
            namespace, metric, *dimensions = [part for part in line if isinstance(part, str)]
            yield where, namespace, metric, frozenset(dimensions[0::2])
            continue
        # Other math only combines lines that are walked on their own.
        for search in (found for expression in expressions for found in searches(expression)):
            for metric in search.metric_names or (None,):
                yield f"{where} SEARCH {search.query!r}", search.namespace, metric, search.dimensions


def metric_uses(stack: StackTemplate, *, dashboards: bool) -> Iterator[MetricUse]:
    for logical_id, resource in stack.resources.items():
        kind, props = resource["Type"], resource.get("Properties", {})
        if kind == "AWS::CloudWatch::Alarm" and not dashboards:
            yield from alarm_metrics(logical_id, props)
        elif kind == "AWS::ApplicationAutoScaling::ScalingPolicy" and not dashboards:
            yield from scaling_metrics(logical_id, props)
        elif kind == "AWS::CloudWatch::Dashboard" and dashboards:
            yield from dashboard_metrics(logical_id, props)


def undocumented(uses: Iterator[MetricUse], stack: str) -> list[str]:
    """The uses whose namespace, metric or dimension set the table does not have."""
    problems = []
    for where, namespace, metric, dimensions in uses:
        if namespace not in METRIC_DIMENSIONS:
            problems.append(f"{stack}: {where}: namespace {namespace!r} is not in the table")
            continue
        document, metrics = METRIC_DIMENSIONS[namespace]
        if metric not in metrics:
            problems.append(f"{stack}: {where}: {namespace} {metric!r} is not in the table ({document})")
        elif dimensions not in metrics[metric]:
            allowed = " or ".join(str(sorted(d)) for d in metrics[metric])
            problems.append(
                f"{stack}: {where}: {namespace} {metric} is published with {allowed}, not {sorted(dimensions)} "
                f"({document})"
            )
    return problems


VARIANTS = sorted(TEMPLATE_VARIANTS)
ASYNC_VARIANTS = sorted(
    v for v, overrides in TEMPLATE_VARIANTS.items() if overrides.get("serving_mode") == "async"
)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_alarm_and_scaling_policy_watches_a_metric_with_the_dimensions_aws_publishes(
    synth_app: Callable[..., AcousticShieldApp], variant: str
) -> None:
    """The documents of METRIC_DIMENSIONS (one per namespace): an alarm or a target-tracking policy on a
    metric that is not published with exactly these dimensions never sees a data point."""
    # Given every stack of this configuration
    problems, seen = [], 0
    for stack in stack_templates(synth_app, variant):
        # When each alarm's metric (each MetricStat of a metric-math alarm) and each customized scaling metric
        # is looked up in AWS's tables
        uses = list(metric_uses(stack, dashboards=False))
        seen += len(uses)
        problems += undocumented(iter(uses), stack.name)
    # Then every one is a metric AWS publishes, with those dimensions
    assert seen
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_dashboard_graph_shows_a_metric_with_the_dimensions_aws_publishes(
    synth_app: Callable[..., AcousticShieldApp], variant: str
) -> None:
    """The documents of METRIC_DIMENSIONS: a graph of a metric that is not published with these dimensions
    stays empty, and an empty graph reads as "nothing happened"."""
    # Given every stack of this configuration
    problems, seen = [], 0
    for stack in stack_templates(synth_app, variant):
        # When each metric line of each dashboard is looked up in AWS's tables
        uses = list(metric_uses(stack, dashboards=True))
        seen += len(uses)
        problems += undocumented(iter(uses), stack.name)
    # Then every one is a metric AWS publishes, with those dimensions
    assert seen
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", ASYNC_VARIANTS)
def test_an_async_endpoint_watches_no_metric_async_endpoints_do_not_publish(
    synth_app: Callable[..., AcousticShieldApp], variant: str
) -> None:
    """Alarms and logs for tracking metrics from asynchronous endpoints: the list is exhaustive; OverheadLatency,
    Invocations and InvocationsPerInstance are not published for an async endpoint."""
    # Given the Serving stack of an async endpoint
    built = synth_app(**TEMPLATE_VARIANTS[variant])
    (serving,) = [s for s in stack_templates(synth_app, variant) if s.stack is built.serving]
    # When its alarms, scaling policies and dashboards are read
    uses = [*metric_uses(serving, dashboards=False), *metric_uses(serving, dashboards=True)]
    # Then none watches a SageMaker metric such an endpoint never publishes
    unpublished = [
        f"{where}: {metric}"
        for where, namespace, metric, _ in uses
        if namespace == "AWS/SageMaker" and metric in NOT_PUBLISHED_BY_ASYNC_ENDPOINTS
    ]
    assert uses
    assert not unpublished, unpublished


def test_a_metric_math_alarm_is_checked_metric_by_metric() -> None:
    """Amazon CloudWatch, Creating a CloudWatch alarm based on a metric math expression: each MetricStat of the
    expression is a metric of its own, with its own dimensions. This pins the walk to metric-math alarms, which
    the stacks do not build today, and to the failure it exists to catch: the async alarm before this rule."""
    # Given an alarm on errors per invocation: InvocationFailures per endpoint only, and processed requests
    alarm = {
        "Metrics": [
            {"Id": "rate", "Expression": "failures / invocations"},
            {
                "Id": "failures",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": "InvocationFailures",
                        "Dimensions": [{"Name": "EndpointName", "Value": "e"}],
                    }
                },
            },
            {
                "Id": "invocations",
                "MetricStat": {
                    "Metric": {
                        "Namespace": "AWS/SageMaker",
                        "MetricName": "Invocation4XXErrors",
                        "Dimensions": [
                            {"Name": "EndpointName", "Value": "e"},
                            {"Name": "VariantName", "Value": "v"},
                        ],
                    }
                },
            },
        ]
    }
    # When its metrics are looked up
    problems = undocumented(alarm_metrics("Rate", alarm), "Serving")
    # Then the expression is skipped, the variant's metric passes, and the endpoint-only one is refused
    assert problems == [
        "Serving: alarm Rate (failures): AWS/SageMaker InvocationFailures is published with ['EndpointName', "
        f"'VariantName'], not ['EndpointName'] ({METRIC_DIMENSIONS['AWS/SageMaker'][0]})"
    ]


def test_a_dashboard_search_is_checked_like_a_metric_line() -> None:
    """CloudWatch search expression syntax: the metric schema ``{Namespace, DimensionName, ...}`` names the
    namespace and the dimensions of the metrics searched, and ``MetricName="..."`` the metrics. A search on a
    schema no metric has finds nothing, and its graph stays as empty as a line with the wrong dimensions."""
    # Given a graph of training jobs' CPU per host, of a health flag per job, of CPU per job (SageMaker
    # publishes instance metrics per host only), and a search without a schema
    lines = [
        [
            {
                "expression": 'SEARCH(\'{"/aws/sagemaker/TrainingJobs",Host} MetricName="CPUUtilization" '
                "Host=job', 'Maximum', 300)"
            }
        ],
        [
            {
                "expression": 'SEARCH(\'{/aws/sagemaker/TrainingJobs,TrainingJobName} (MetricName="health_overfit" '
                "OR MetricName=\"eval_f1\") TrainingJobName=job', 'Maximum', 300)"
            }
        ],
        [
            {
                "expression": 'SEARCH(\'{"/aws/sagemaker/TrainingJobs",TrainingJobName} MetricName="CPUUtilization"\''
                ", 'Maximum', 300)"
            }
        ],
        [{"expression": "SEARCH(' MetricName=\"CPUUtilization\" ', 'Average', 300)"}],
        [{"expression": "SUM(METRICS())"}],
    ]
    body = {"widgets": [{"properties": {"title": "g", "metrics": lines}}]}
    # When its lines are looked up in the table
    uses = list(dashboard_metrics("D", {"DashboardBody": json.dumps(body)}))
    problems = undocumented(iter(uses), "Training")
    # Then each metric a search asks for is a use of its own, the math line is skipped, and the two searches
    # that can find nothing are refused
    assert [(namespace, metric, sorted(dimensions)) for _, namespace, metric, dimensions in uses] == [
        ("/aws/sagemaker/TrainingJobs", "CPUUtilization", ["Host"]),
        ("/aws/sagemaker/TrainingJobs", "health_overfit", ["TrainingJobName"]),
        ("/aws/sagemaker/TrainingJobs", "eval_f1", ["TrainingJobName"]),
        ("/aws/sagemaker/TrainingJobs", "CPUUtilization", ["TrainingJobName"]),
        (None, "CPUUtilization", []),
    ]
    assert len(problems) == 2
    assert "CPUUtilization is published with ['Host'], not ['TrainingJobName']" in problems[0]
    assert "namespace None is not in the table" in problems[1]


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_dashboard_search_is_one_cloudwatch_runs(
    synth_app: Callable[..., AcousticShieldApp], variant: str
) -> None:
    """CloudWatch search expression syntax: a query of at most 1,024 characters, at most 100 search expressions
    on one graph, a statistic and a period (seconds); a property of the search term that is a dimension
    (``TrainingJobName=...``) must be one of the schema's, or no metric of that schema has it."""
    # Given every dashboard of this configuration
    problems, seen = [], 0
    for stack in stack_templates(synth_app, variant):
        for logical_id, resource in stack.resources.items():
            if resource["Type"] != "AWS::CloudWatch::Dashboard":
                continue
            per_graph: dict[str, int] = {}
            # When each search of each graph is read
            for where, line in dashboard_lines(logical_id, resource["Properties"]):
                for part in line:
                    for search in searches(part.get("expression", "")) if isinstance(part, dict) else []:
                        seen += 1
                        per_graph[where] = per_graph.get(where, 0) + 1
                        outside = set(search.properties) - _NOT_DIMENSIONS - search.dimensions
                        # Then it fits, says how to aggregate, and filters only on its schema's dimensions
                        if len(search.query) > 1024:
                            problems.append(f"{stack.name}: {where}: query of {len(search.query)} characters")
                        if not search.statistic or not search.period or search.period % 60:
                            problems.append(f"{stack.name}: {where}: statistic or period missing or odd")
                        if outside:
                            problems.append(f"{stack.name}: {where}: {sorted(outside)} not in the schema")
            problems += [f"{stack.name}: {w}: {n} searches" for w, n in per_graph.items() if n > 100]
    assert seen  # the Training stack's operations dashboard searches for its jobs
    assert not problems, "\n".join(problems)
