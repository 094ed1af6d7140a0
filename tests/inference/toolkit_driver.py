"""Drives the handler through the real HuggingFaceHandlerService, as the model server does.

Run with the toolkit's environment (``.venv-toolkit/bin/python``):
``toolkit_driver.py MODEL_DIR CASES_JSON``; CASES_JSON is a list of
``{"name", "body_b64", "headers"}``. Prints one JSON object per case:
``{"name", "status", "content_type", "body"}`` (status 200, or the PredictionException's code).
"""

from __future__ import annotations

import base64
import json
import sys

from mms.context import Context, RequestProcessor
from mms.metrics.metrics_store import MetricsStore
from mms.service import PredictionException
from sagemaker_huggingface_inference_toolkit.handler_service import HuggingFaceHandlerService


def main(model_dir: str, cases_path: str) -> None:
    with open(cases_path) as handle:
        cases = json.load(handle)
    # One context for the worker's life, updated per request, as mms.service.Service does.
    context = Context("model", model_dir, {}, 1, -1, "1.1.11")
    context.metrics = MetricsStore({0: "init"}, "model")
    context.request_processor = [RequestProcessor({})]
    service = HuggingFaceHandlerService()
    service.initialize(context)
    for case in cases:
        context.request_processor = [RequestProcessor(case["headers"])]
        context.metrics = MetricsStore({0: case["name"]}, "model")
        data = [{"body": bytearray(base64.b64decode(case["body_b64"]))}]
        try:
            (response,) = service.handle(data, context)
            result = {"status": 200, "content_type": context.get_response_content_type(0), "body": response}
        except PredictionException as err:
            result = {"status": err.error_code, "content_type": None, "body": err.message}
        if isinstance(result["body"], bytes | bytearray):
            result["body"] = bytes(result["body"]).decode()
        print(json.dumps({"name": case["name"], **result}), flush=True)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
