"""Dead-letter queues for EventBridge targets: encrypted, SSL-only, two weeks to look at failures."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from .nag import acknowledge


def dead_letter_queue(scope: Construct, *, target: str) -> sqs.Queue:
    """A ``DeadLetters`` queue in ``scope`` for the rule target described by ``target``.

    SQS-managed encryption because EventBridge cannot write to a queue encrypted with a customer key
    without a key policy naming it.
    """
    queue = sqs.Queue(
        scope,
        "DeadLetters",
        encryption=sqs.QueueEncryption.SQS_MANAGED,
        enforce_ssl=True,
        retention_period=cdk.Duration.days(14),
    )
    acknowledge(queue, "AwsSolutions-SQS3", f"This queue is itself the {target}'s dead-letter queue.")
    return queue
