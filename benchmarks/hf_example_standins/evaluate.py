"""STAND-IN for the Hugging Face ``evaluate`` package, for benchmarks/speech.py only.

The transformers example ``run_speech_recognition_ctc.py`` calls ``evaluate.load("wer")`` (and "cer" when
asked), which downloads the metric's script from the Hub: not possible offline. This module answers those
two names locally with jiwer, which is what the Hub's ``wer`` and ``cer`` metrics compute with
(``jiwer.wer(references, predictions)`` over the whole list; no text normalization). Any other metric name
is an error. It is put first on the example's ``sys.path`` by ``run_example.py`` beside it; nothing else
imports it.
"""

from __future__ import annotations

from typing import Any

import jiwer

STAND_IN = True  # benchmarks/speech.py checks that this module, not the real package, was used


class _Metric:
    def __init__(self, name: str) -> None:
        self.name = name

    def compute(self, *, predictions: list[str], references: list[str], **_: Any) -> float:
        if self.name == "wer":
            return float(jiwer.wer(list(references), list(predictions)))
        return float(jiwer.cer(list(references), list(predictions)))


def load(path: str, *args: Any, **kwargs: Any) -> _Metric:
    if path not in ("wer", "cer"):
        raise ValueError(f"the offline evaluate stand-in answers 'wer' and 'cer' only, not {path!r}")
    return _Metric(path)
