"""The model's ``code/inference.py``: the inference toolkit imports it from ``code/`` (its import root) and
calls the four handler functions; ``current_settings`` lets a local server (``tools/serve.py``) refuse a body
over the handler's limit before reading it."""

from serving.inference import current_settings, input_fn, model_fn, output_fn, predict_fn

__all__ = ["current_settings", "input_fn", "model_fn", "output_fn", "predict_fn"]
