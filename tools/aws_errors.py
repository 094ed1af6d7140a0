"""What the command-line tools (invoke, batch) say when AWS refuses a call or cannot be reached."""

from __future__ import annotations

from typing import Any

# What a BotoCoreError usually needs (no region configured, no endpoint for the region).
REGION_HINT = "pass --region or set AWS_REGION"


def aws_error(error: BaseException) -> str:
    """``Code: Message`` of a botocore ``ClientError``; any other error (``BotoCoreError``) as it says."""
    response: Any = getattr(error, "response", None)
    if isinstance(response, dict):
        details = response.get("Error") or {}
        return f"{details.get('Code', 'Error')}: {details.get('Message', error)}"
    return str(error)
