"""A lease on one S3 object: what serializes the Lambdas' critical sections without reserved concurrency.

The first writer wins (``PutObject`` with ``If-None-Match: *``); a lease past its expiry is taken over by
exactly one writer (``If-Match`` on the expired lease's ETag), so a holder that died never blocks the next
caller for longer than ``LEASE``. The lease outlives any invocation that holds it (Lambda's longest timeout is
15 minutes), so a live holder never loses it and may release it unconditionally. Bundled into both Lambda
packages beside their code.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from botocore.exceptions import ClientError

from common import contract

LEASE = timedelta(minutes=20)
# A conditional write that lost: the object exists or changed (412), or another write to it is under way (409).
TAKEN = ("PreconditionFailed", "412", "ConditionalRequestConflict", "409")
MISSING = ("NoSuchKey", "404", "NotFound")


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


def _expiry(body: bytes) -> datetime | None:
    """When a lease ends; None for a body that is not a lease (taken over like an expired one)."""
    try:
        return datetime.fromisoformat(json.loads(body)["expires"])
    except (ValueError, TypeError, KeyError):
        return None


def acquire(s3: Any, bucket: str, key: str, *, owner: str, now: datetime) -> bool:
    """Takes the lease at ``s3://bucket/key`` for ``owner``; False while another caller holds it."""
    body = json.dumps({"owner": owner, "expires": (now + LEASE).isoformat()}).encode()
    put = {"Bucket": bucket, "Key": key, "Body": body, "ContentType": contract.JSON_CONTENT_TYPE}
    try:
        s3.put_object(**put, IfNoneMatch="*")
        return True
    except ClientError as error:
        if _code(error) not in TAKEN:
            raise
    try:
        held = s3.get_object(Bucket=bucket, Key=key)
    except ClientError as error:
        if _code(error) in MISSING:  # released meanwhile: its holder has just finished
            return False
        raise
    expires = _expiry(held["Body"].read())
    if expires is not None and expires > now:
        return False
    try:
        s3.put_object(**put, IfMatch=held["ETag"])
    except ClientError as error:
        if _code(error) in TAKEN + MISSING:  # another caller took it over first, or it was released
            return False
        raise
    return True


def holder(s3: Any, bucket: str, key: str) -> str:
    """Who holds the lease, for messages; "unknown" when it cannot be read."""
    try:
        return str(json.loads(s3.get_object(Bucket=bucket, Key=key)["Body"].read())["owner"])
    except (ClientError, ValueError, TypeError, KeyError):
        return "unknown"


def release(s3: Any, bucket: str, key: str) -> None:
    """Ends the lease (the holder's own: no one takes over a lease before it expires)."""
    s3.delete_object(Bucket=bucket, Key=key)
