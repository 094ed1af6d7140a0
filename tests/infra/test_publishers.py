"""Every publisher may publish: alarms, EventBridge rules and roles reach their encrypted SNS topics.

A topic with a policy of its own (``enforce_ssl`` gives it one) has lost SNS's default policy, and a topic
encrypted with a customer managed key drops what a publisher may not encrypt with that key. CloudFormation and
the local emulator accept both; AWS drops the messages (the alarm's history says "not authorized to perform:
SNS:Publish", the rule counts FailedInvocations). These tests walk every stack of every variant, find each
publisher (alarm actions, rule targets and their dead-letter queues, bucket notifications, the async endpoint's
notifications, every role allowed to publish) and evaluate, as AWS would, the topic's policy, the publisher's
own policy where a role publishes, the key's policy, and every Deny among them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any

import aws_cdk as cdk
import pytest

from infra.app_builder import AcousticShieldApp

from .variants import TEMPLATE_VARIANTS, StackTemplate, stack_templates

CLOUDWATCH = "cloudwatch.amazonaws.com"
EVENTBRIDGE = "events.amazonaws.com"
S3 = "s3.amazonaws.com"
# What the key policy must allow an AWS service that publishes to an encrypted topic, and a role of the account
# that publishes (Managing Amazon SNS encryption keys and costs: "Enable compatibility between event sources
# from AWS services and encrypted topics", "Allow a user to send messages to a topic with SSE").
SERVICE_KEY_ACTIONS = ("kms:GenerateDataKey*", "kms:Decrypt")
ROLE_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
# What EventBridge needs of the key of a dead-letter queue encrypted with a customer managed key (Using
# dead-letter queues to process undelivered events in EventBridge).
QUEUE_KEY_ACTIONS = ("kms:GenerateDataKey", "kms:Decrypt")
# Stand-ins for an environment-agnostic stack's pseudo parameters.
PARTITION, REGION, ACCOUNT = "aws", "region-1", "111111111111"

Resources = dict[str, dict[str, Any]]
Statement = dict[str, Any]


# --- how AWS evaluates a policy, for the conditions these templates use ------------------------------------


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


@dataclass(frozen=True)
class Environment:
    """Renders template values (intrinsics) as the strings AWS would compare: ``<Id>`` for a ``Ref`` of a
    resource, ``<Id.Attribute>`` for a ``Fn::GetAtt``."""

    partition: str
    region: str
    account: str

    @classmethod
    def of(cls, stack: cdk.Stack) -> Environment:
        def literal(value: str, stand_in: str) -> str:
            resolved = stack.resolve(value)
            return resolved if isinstance(resolved, str) else stand_in

        return cls(
            literal(stack.partition, PARTITION),
            literal(stack.region, REGION),
            literal(stack.account, ACCOUNT),
        )

    @property
    def root(self) -> str:
        return f"arn:{self.partition}:iam::{self.account}:root"

    def render(self, value: Any) -> str:
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and len(value) == 1:
            ((function, argument),) = value.items()
            if function == "Ref":
                pseudo = {
                    "AWS::Partition": self.partition,
                    "AWS::Region": self.region,
                    "AWS::AccountId": self.account,
                    "AWS::URLSuffix": "amazonaws.com",
                }
                return pseudo.get(argument, f"<{argument}>")
            if function == "Fn::GetAtt":
                return f"<{argument[0]}.{argument[1]}>"
            if function == "Fn::Join":
                separator, parts = argument
                return str(separator).join(self.render(part) for part in parts)
            if function == "Fn::ImportValue":
                return f"<import {self.render(argument)}>"
        return f"<{json.dumps(value, sort_keys=True)}>"

    def principal_arns(self, principal: Any) -> list[str]:
        arns = [self.render(p) for p in as_list(principal.get("AWS", []))]
        return [self.root if re.fullmatch(r"\d{12}", a) else a for a in arns]


@dataclass(frozen=True)
class Principal:
    """Who calls: an AWS service, a role of the template (its logical ID), or an ARN (the account's root)."""

    service: str | None = None
    role: str | None = None
    account_root: str | None = None

    @property
    def arn(self) -> str | None:
        return f"<{self.role}.Arn>" if self.role else self.account_root

    def __str__(self) -> str:
        return self.service or f"role {self.role}"


@dataclass
class Decision:
    allowed: bool = False
    denied_by: list[Statement] = field(default_factory=list)


def condition_holds(operator: str, expected: list[str], actual: str | None) -> bool:
    if actual is None:
        return False
    if operator == "StringEquals":
        return actual in expected
    if operator == "StringEqualsIgnoreCase":
        return actual.lower() in {e.lower() for e in expected}
    if operator in ("StringLike", "ArnLike", "ArnEquals"):  # IAM: both ARN operators take wildcards
        return any(fnmatchcase(actual, e) for e in expected)
    if operator == "Bool":
        return actual.lower() in {e.lower() for e in expected}
    raise AssertionError(f"condition operator {operator} is not modelled here; add it before relying on it")


def applies(
    statement: Statement,
    env: Environment,
    *,
    principal: Principal | None,
    action: str,
    resource: str,
    context: dict[str, str],
) -> bool:
    """Whether ``statement`` covers this request. ``principal`` None: an identity policy of the caller."""
    if principal is not None:
        named = statement.get("Principal")
        if named is None:
            return False
        if named != "*":
            services = as_list(named.get("Service", []))
            arns = env.principal_arns(named)
            if "*" not in arns and not (
                (principal.service and principal.service in services)
                or (principal.arn and principal.arn in arns)
            ):
                return False
    actions = [a.lower() for a in as_list(statement.get("Action", []))]
    if not any(fnmatchcase(action.lower(), a) for a in actions):
        return False
    resources = [env.render(r) for r in as_list(statement.get("Resource", "*"))]
    if not any(fnmatchcase(resource, r) for r in resources):
        return False
    keys = {k.lower(): v for k, v in context.items()}
    for operator, pairs in statement.get("Condition", {}).items():
        for key, expected in pairs.items():
            if not condition_holds(
                operator, [env.render(e) for e in as_list(expected)], keys.get(key.lower())
            ):
                return False
    return True


def decide(
    statements: Iterable[Statement],
    env: Environment,
    *,
    principal: Principal | None,
    action: str,
    resource: str,
    context: dict[str, str],
) -> Decision:
    decision = Decision()
    for statement in statements:
        if applies(statement, env, principal=principal, action=action, resource=resource, context=context):
            if statement["Effect"] == "Deny":
                decision.denied_by.append(statement)
            else:
                decision.allowed = True
    return decision


# --- the template's policies --------------------------------------------------------------------------------


def of_type(resources: Resources, kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def resource_policy(resources: Resources, kind: str, key: str, target: str) -> list[Statement]:
    """The statements of every ``kind`` policy (topic or queue policy) attached to ``target``."""
    return [
        statement
        for policy in of_type(resources, kind).values()
        if {"Ref": target} in policy["Properties"][key]
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    ]


def identity_policy(resources: Resources, role: str) -> list[Statement]:
    """The statements of the role's inline policies and of every policy attached to it in the template."""
    found = [
        statement
        for inline in resources[role]["Properties"].get("Policies", [])
        for statement in inline["PolicyDocument"]["Statement"]
    ]
    for kind in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
        for policy in of_type(resources, kind).values():
            if {"Ref": role} in policy["Properties"].get("Roles", []):
                found += policy["Properties"]["PolicyDocument"]["Statement"]
    return found


def referenced(value: Any, resources: Resources, kind: str, attribute: str | None = None) -> str | None:
    """The logical ID that ``value`` (a ``Ref``, or ``Fn::GetAtt`` of ``attribute``) names, if of ``kind``."""
    if attribute is None and isinstance(value, dict) and set(value) == {"Ref"}:
        name = value["Ref"]
    elif (
        attribute
        and isinstance(value, dict)
        and set(value) == {"Fn::GetAtt"}
        and value["Fn::GetAtt"][1] == attribute
    ):
        name = value["Fn::GetAtt"][0]
    else:
        return None
    return name if resources.get(name, {}).get("Type") == kind else None


# --- publishers -----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Publication:
    """``principal`` publishes to ``topic`` (logical ID); ``context``: the request's global condition keys."""

    what: str
    principal: Principal
    topic: str
    context: tuple[tuple[str, str], ...] = ()


def alarm_actions(stack: StackTemplate) -> Iterator[tuple[str, str, Any]]:
    """(alarm, property, action) for every action of every alarm."""
    for alarm, resource in of_type(stack.resources, "AWS::CloudWatch::Alarm").items():
        for prop in ("AlarmActions", "OKActions", "InsufficientDataActions"):
            for action in resource["Properties"].get(prop, []):
                yield alarm, prop, action


def alarm_publications(stack: StackTemplate) -> tuple[list[Publication], list[str]]:
    """CloudWatch publishing each alarm's SNS actions, and the actions that are neither SNS nor scaling."""
    env = Environment.of(stack.stack)
    publications, unknown = [], []
    for alarm, prop, action in alarm_actions(stack):
        topic = referenced(action, stack.resources, "AWS::SNS::Topic")
        if topic is not None:
            source = f"arn:{env.partition}:cloudwatch:{env.region}:{env.account}:alarm:<{alarm}>"
            context = (("aws:SourceArn", source), ("aws:SourceAccount", env.account))
            publications.append(Publication(f"alarm {alarm} ({prop})", Principal(CLOUDWATCH), topic, context))
        elif referenced(action, stack.resources, "AWS::ApplicationAutoScaling::ScalingPolicy") is None:
            unknown.append(
                f"{stack.name}: alarm {alarm} ({prop}) has an action this test does not know: {action}"
            )
    return publications, unknown


def sns_targets(stack: StackTemplate) -> Iterator[tuple[str, dict[str, Any], str]]:
    """(rule, target, topic) for every rule target that is an SNS topic of the stack."""
    for rule, resource in of_type(stack.resources, "AWS::Events::Rule").items():
        for target in resource["Properties"].get("Targets", []):
            topic = referenced(target["Arn"], stack.resources, "AWS::SNS::Topic")
            if topic is not None:
                yield rule, target, topic


def rule_publications(stack: StackTemplate) -> list[Publication]:
    env = Environment.of(stack.stack)
    return [
        Publication(
            f"rule {rule} (target {target['Id']})",
            Principal(EVENTBRIDGE),
            topic,
            (("aws:SourceArn", f"<{rule}.Arn>"), ("aws:SourceAccount", env.account)),
        )
        for rule, target, topic in sns_targets(stack)
    ]


def bucket_publications(stack: StackTemplate) -> list[Publication]:
    """S3 event notifications to SNS topics (S3 publishes as its service principal)."""
    env = Environment.of(stack.stack)
    found = []
    for bucket, resource in of_type(stack.resources, "AWS::S3::Bucket").items():
        notifications = resource["Properties"].get("NotificationConfiguration", {})
        for configuration in notifications.get("TopicConfigurations", []):
            topic = referenced(configuration["Topic"], stack.resources, "AWS::SNS::Topic")
            assert topic, f"{stack.name}: bucket {bucket} notifies a topic outside its stack: {configuration}"
            context = (("aws:SourceArn", f"<{bucket}.Arn>"), ("aws:SourceAccount", env.account))
            found.append(Publication(f"bucket {bucket}", Principal(S3), topic, context))
    return found


def async_publications(stack: StackTemplate) -> tuple[list[Publication], list[str]]:
    """The async endpoint's success and error notifications, published as the role of each variant's model."""
    publications, problems = [], []
    for config, resource in of_type(stack.resources, "AWS::SageMaker::EndpointConfig").items():
        props = resource["Properties"]
        notification = (
            props.get("AsyncInferenceConfig", {}).get("OutputConfig", {}).get("NotificationConfig", {})
        )
        for variant in props["ProductionVariants"]:
            model = referenced(variant["ModelName"], stack.resources, "AWS::SageMaker::Model", "ModelName")
            role = model and referenced(
                stack.resources[model]["Properties"]["ExecutionRoleArn"],
                stack.resources,
                "AWS::IAM::Role",
                "Arn",
            )
            for key in ("SuccessTopic", "ErrorTopic"):
                if key not in notification:
                    continue
                topic = referenced(notification[key], stack.resources, "AWS::SNS::Topic")
                if topic is None or role is None:
                    problems.append(
                        f"{stack.name}: {config} {key}: topic or model role is not in the template"
                    )
                    continue
                publications.append(
                    Publication(f"endpoint config {config} ({key})", Principal(role=role), topic)
                )
    return publications, problems


def role_publications(stack: StackTemplate) -> list[Publication]:
    """Every role whose own policies let it publish to a topic of the stack (a Lambda, the model's role)."""
    env = Environment.of(stack.stack)
    return [
        Publication(f"role {role}", Principal(role=role), topic)
        for role in of_type(stack.resources, "AWS::IAM::Role")
        for topic in of_type(stack.resources, "AWS::SNS::Topic")
        if decide(
            identity_policy(stack.resources, role),
            env,
            principal=None,
            action="sns:Publish",
            resource=f"<{topic}>",
            context={},
        ).allowed
    ]


# --- the checks -------------------------------------------------------------------------------------------


def key_problems(
    stack: StackTemplate, key: str, principal: Principal, actions: Iterable[str], what: str
) -> list[str]:
    """Whether the key's policy lets ``principal`` use it: a service by name, a role by name or through the
    account (the key policy's account statement, then the role's own policy)."""
    env = Environment.of(stack.stack)
    statements = stack.resources[key]["Properties"]["KeyPolicy"]["Statement"]
    role_policy = identity_policy(stack.resources, principal.role) if principal.role else []
    resource = f"<{key}.Arn>"
    problems = []
    for action in actions:
        # No aws:Source* keys: SNS does not pass them to KMS for EventBridge, and AWS's statement has none.
        direct = decide(statements, env, principal=principal, action=action, resource=resource, context={})
        allowed = direct.allowed
        denials = direct.denied_by
        if principal.role and not allowed:
            account = decide(
                statements,
                env,
                principal=Principal(account_root=env.root),
                action=action,
                resource=resource,
                context={},
            )
            own = decide(role_policy, env, principal=None, action=action, resource=resource, context={})
            allowed = account.allowed and own.allowed
            denials += own.denied_by
        if not allowed:
            problems.append(f"{stack.name}: {what}: key {key} does not let {principal} {action}")
        if denials:
            problems.append(f"{stack.name}: {what}: key {key} denies {principal} {action}: {denials}")
    return problems


def publication_problems(stack: StackTemplate, publication: Publication) -> list[str]:
    """What keeps ``publication`` from reaching its topic: the topic's policy, a Deny, the topic's key."""
    env = Environment.of(stack.stack)
    principal, topic = publication.principal, publication.topic
    # Services and the SDKs publish over TLS: the SSL-only Deny does not apply to them.
    context = {"aws:SecureTransport": "true", **dict(publication.context)}
    decision = decide(
        resource_policy(stack.resources, "AWS::SNS::TopicPolicy", "Topics", topic),
        env,
        principal=principal,
        action="sns:Publish",
        resource=f"<{topic}>",
        context=context,
    )
    allowed, denials = decision.allowed, decision.denied_by
    if (
        principal.role
    ):  # a role of the account: its own policy may allow what the topic's policy does not name
        own = decide(
            identity_policy(stack.resources, principal.role),
            env,
            principal=None,
            action="sns:Publish",
            resource=f"<{topic}>",
            context=context,
        )
        allowed = allowed or own.allowed
        denials = denials + own.denied_by
    problems = []
    if not allowed:
        problems.append(
            f"{stack.name}: {publication.what}: topic {topic} does not let {principal} sns:Publish"
        )
    if denials:
        problems.append(f"{stack.name}: {publication.what}: topic {topic} denies {principal}: {denials}")
    master_key = stack.resources[topic]["Properties"].get("KmsMasterKeyId")
    if master_key is not None:
        key = referenced(master_key, stack.resources, "AWS::KMS::Key", "Arn")
        if key is None:
            problems.append(f"{stack.name}: {publication.what}: topic {topic}'s key is not in the template")
        else:
            actions = ROLE_KEY_ACTIONS if principal.role else SERVICE_KEY_ACTIONS
            problems += key_problems(stack, key, principal, actions, publication.what)
    return problems


def all_problems(
    stacks: Iterable[StackTemplate], find: Callable[[StackTemplate], list[Publication]]
) -> tuple[list[Publication], list[str]]:
    found: list[Publication] = []
    problems: list[str] = []
    for stack in stacks:
        publications = find(stack)
        found += publications
        for publication in publications:
            problems += publication_problems(stack, publication)
    return found, problems


VARIANTS = sorted(TEMPLATE_VARIANTS)


@pytest.mark.parametrize("variant", VARIANTS)
def test_cloudwatch_may_publish_every_alarm_action_to_its_topic(
    synth_app: Callable[..., AcousticShieldApp], variant: str
) -> None:
    """Why didn't I receive an SNS notification for my CloudWatch alarm trigger? (AWS Knowledge Center): the
    topic's access policy must let cloudwatch.amazonaws.com sns:Publish; aws:SourceArn (the alarm's ARN) and
    aws:SourceAccount may scope it (Example cases for Amazon SNS access control). Managing Amazon SNS encryption
    keys and costs, Enable compatibility between event sources from AWS services and encrypted topics: the key
    policy must let the service kms:GenerateDataKey* and kms:Decrypt."""
    # Given every stack of this configuration
    stacks = list(stack_templates(synth_app, variant))
    # When every alarm action that names an SNS topic is evaluated as CloudWatch publishing for that alarm
    unknown: list[str] = []

    def alarms(stack: StackTemplate) -> list[Publication]:
        publications, others = alarm_publications(stack)
        unknown.extend(others)
        return publications

    found, problems = all_problems(stacks, alarms)
    # Then there are alarms to check, every one reaches its topic, and no action is of an unknown kind
    assert found
    assert not problems, "\n".join(problems)
    assert not unknown, "\n".join(unknown)


@pytest.mark.parametrize("variant", VARIANTS)
def test_eventbridge_publishes_each_rule_to_its_topic_as_itself_scoped_to_that_rule(
    synth_app: Callable[..., AcousticShieldApp], variant: str
) -> None:
    """Using resource-based policies for Amazon EventBridge (Amazon SNS permissions): the topic's policy lets
    events.amazonaws.com sns:Publish, and targets that use resource-based policies take no RoleArn (delivery may
    fail, particularly to a topic with KMS encryption). Why isn't my Amazon SNS topic receiving EventBridge
    notifications? (AWS Knowledge Center): the key policy must let EventBridge use the topic's key. Managing
    Amazon SNS encryption keys and costs, Enable compatibility between event sources from AWS services and
    encrypted topics: kms:GenerateDataKey* and kms:Decrypt for the service, and no aws:SourceArn or
    aws:SourceAccount condition in the key policy for EventBridge (not supported for EventBridge-to-encrypted
    topics)."""
    # Given every stack of this configuration
    stacks = list(stack_templates(synth_app, variant))
    # When every rule target that is an SNS topic is evaluated as EventBridge publishing for that rule
    found, problems = all_problems(stacks, rule_publications)
    with_roles = [
        f"{stack.name}: rule {rule} publishes to {topic} with a role"
        for stack in stacks
        for rule, target, topic in sns_targets(stack)
        if "RoleArn" in target
    ]
    # Then every notice reaches its topic through the topic's policy, with no role on the target
    assert found
    assert not problems, "\n".join(problems)
    assert not with_roles, "\n".join(with_roles)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_rule_target_may_dead_letter_its_undelivered_events(
    synth_app: Callable[..., AcousticShieldApp], variant: str
) -> None:
    """Using dead-letter queues to process undelivered events in EventBridge: EventBridge sends an event it
    could not deliver to the target's queue as events.amazonaws.com, which the queue's policy must allow
    (sqs:SendMessage, aws:SourceArn the rule); a queue encrypted with a customer managed key must let
    EventBridge use it."""
    # Given every stack of this configuration
    problems, checked = [], 0
    for stack in stack_templates(synth_app, variant):
        env = Environment.of(stack.stack)
        # When each target's dead-letter queue is evaluated as EventBridge sending for that rule
        for rule, resource in of_type(stack.resources, "AWS::Events::Rule").items():
            for target in resource["Properties"].get("Targets", []):
                if "DeadLetterConfig" not in target:
                    continue
                checked += 1
                queue = referenced(
                    target["DeadLetterConfig"]["Arn"], stack.resources, "AWS::SQS::Queue", "Arn"
                )
                what = f"{stack.name}: rule {rule} (target {target['Id']})"
                if queue is None:
                    problems.append(f"{what}: dead-letter queue is not in the template")
                    continue
                context = {
                    "aws:SecureTransport": "true",
                    "aws:SourceArn": f"<{rule}.Arn>",
                    "aws:SourceAccount": env.account,
                }
                decision = decide(
                    resource_policy(stack.resources, "AWS::SQS::QueuePolicy", "Queues", queue),
                    env,
                    principal=Principal(EVENTBRIDGE),
                    action="sqs:SendMessage",
                    resource=f"<{queue}.Arn>",
                    context=context,
                )
                if not decision.allowed or decision.denied_by:
                    problems.append(f"{what}: queue {queue} does not let EventBridge send its dead letters")
                master_key = stack.resources[queue]["Properties"].get("KmsMasterKeyId")
                if master_key is not None:
                    key = referenced(master_key, stack.resources, "AWS::KMS::Key", "Arn")
                    problems += (
                        key_problems(stack, key, Principal(EVENTBRIDGE), QUEUE_KEY_ACTIONS, what)
                        if key
                        else [f"{what}: queue {queue}'s key is not in the template"]
                    )
    # Then every queue takes its rule's dead letters
    assert checked
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("variant", VARIANTS)
def test_every_role_and_service_that_publishes_to_an_encrypted_topic_may_use_its_key(
    synth_app: Callable[..., AcousticShieldApp], variant: str
) -> None:
    """Managing Amazon SNS encryption keys and costs (Allow a user to send messages to a topic with SSE): a
    publisher needs kms:GenerateDataKey and kms:Decrypt on the topic's key besides sns:Publish.
    AsyncInferenceNotificationConfig (SageMaker API reference): the async endpoint posts its success and error
    notifications to these topics, as the execution role of the model (CreateModel, ExecutionRoleArn). Amazon
    S3, Granting permissions to publish event notification messages to a destination: S3 publishes as
    s3.amazonaws.com."""
    # Given every stack of this configuration
    stacks = list(stack_templates(synth_app, variant))
    # When the async endpoint's notifications, every role allowed to publish and every bucket notification are
    # evaluated against the topic's, the role's and the key's policies
    missing: list[str] = []

    def publishers(stack: StackTemplate) -> list[Publication]:
        endpoint, problems = async_publications(stack)
        missing.extend(problems)
        return endpoint + role_publications(stack) + bucket_publications(stack)

    found, problems = all_problems(stacks, publishers)
    # Then each may publish and encrypt; the Training stack's promoter is one of them in every variant
    assert any(p.what.startswith("role PromoterHandlerRole") for p in found), [p.what for p in found]
    assert not problems, "\n".join(problems)
    assert not missing, "\n".join(missing)


def test_the_async_endpoint_publishes_its_results_as_its_model_role(
    synth_app: Callable[..., AcousticShieldApp],
) -> None:
    """AsyncInferenceNotificationConfig (SageMaker API reference): SuccessTopic and ErrorTopic receive the
    endpoint's notifications; this pins that the walk above finds both, so that it cannot pass by finding none."""
    # Given the async variant
    stacks = list(stack_templates(synth_app, "serving-async"))
    # When its endpoint's notifications are collected
    found = [p for stack in stacks for p in async_publications(stack)[0]]
    # Then there are two, success and error, published by one role
    assert sorted(p.what.rsplit(" ", 1)[1] for p in found) == ["(ErrorTopic)", "(SuccessTopic)"]
    assert len({p.principal for p in found}) == 1


def test_a_topic_whose_policy_only_denies_plain_http_lets_no_alarm_publish() -> None:
    """Amazon SNS, Example cases for Amazon SNS access control: a topic policy replaces the default one, so a
    policy whose only statement denies non-TLS publishing allows no service. This pins the evaluator above to
    the failure it exists to catch (the templates before this rule), not only to today's templates."""
    # Given a topic whose only statement is the SSL-only Deny that CDK writes for enforce_ssl
    env = Environment(PARTITION, REGION, ACCOUNT)
    ssl_only = {
        "Action": "sns:Publish",
        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
        "Effect": "Deny",
        "Principal": "*",
        "Resource": {"Ref": "Topic"},
    }
    alarm = {"aws:SecureTransport": "true", "aws:SourceArn": f"arn:aws:cloudwatch:{REGION}:{ACCOUNT}:alarm:a"}
    # When CloudWatch publishes over TLS and over plain HTTP
    over_tls = decide(
        [ssl_only],
        env,
        principal=Principal(CLOUDWATCH),
        action="sns:Publish",
        resource="<Topic>",
        context=alarm,
    )
    plain = decide(
        [ssl_only],
        env,
        principal=Principal(CLOUDWATCH),
        action="sns:Publish",
        resource="<Topic>",
        context={**alarm, "aws:SecureTransport": "false"},
    )
    # Then nothing allows it, and the Deny only applies to plain HTTP
    assert (over_tls.allowed, over_tls.denied_by) == (False, [])
    assert plain.denied_by == [ssl_only]
    # And a statement scoped to another rule's ARN does not let this rule publish
    scoped = {
        "Action": "sns:Publish",
        "Condition": {"ArnEquals": {"aws:SourceArn": [{"Fn::GetAtt": ["OtherRule", "Arn"]}]}},
        "Effect": "Allow",
        "Principal": {"Service": EVENTBRIDGE},
        "Resource": {"Ref": "Topic"},
    }
    rule = {"aws:SecureTransport": "true", "aws:SourceArn": "<Rule.Arn>"}
    assert not decide(
        [scoped],
        env,
        principal=Principal(EVENTBRIDGE),
        action="sns:Publish",
        resource="<Topic>",
        context=rule,
    ).allowed
