"""Seams between the handler, the promoter and the model packages it registers: one contract, no copies."""

from __future__ import annotations

from functions.promoter import logic as promoter
from ml_code import contract, inference


def test_a_model_package_advertises_exactly_what_the_handler_accepts() -> None:
    # Given the content types the promoter registers on every model package
    advertised = set(promoter.CONTENT_TYPES)
    # When they are compared with what the handler parses (inference.parse_request's check)
    accepted = set(inference.SUPPORTED_CONTENT_TYPES)
    # Then they are the same set (the endpoint created from the package serves exactly what it says)
    assert advertised == accepted
    assert set(promoter.RESPONSE_TYPES) == {contract.JSON_CONTENT_TYPE}
