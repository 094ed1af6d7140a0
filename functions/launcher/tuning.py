"""Hyperparameter tuning: what a tuning job searches, parsed from one line of configuration.

The configuration validates ``tuning_ranges`` with this parser at synthesis and the launcher parses the
same text again at cold start, so the ranges a deployment accepts are exactly the ranges it sends. Only
the ``train.py`` arguments an event may set (``ml_code/contract.py``) can be tuned, within the same bounds.
Pure: no AWS imports.
"""

from __future__ import annotations

import math
from typing import Any

try:  # the Lambda package carries the contract beside this module
    from . import contract  # type: ignore[attr-defined]
except ImportError:  # the repository
    from ml_code import contract

# SageMaker's limit on tuning job names, and the characters of the trigger's digest that end each one.
NAME_LIMIT = 32
SUFFIX_LENGTH = 8
STRATEGIES = ("Bayesian", "Random", "Hyperband")
EARLY_STOPPING = ("Auto", "Off")
# Metrics train.py prints after every evaluation (validation split), and which way is better.
OBJECTIVES = contract.TUNING_OBJECTIVES
SCALINGS = {"auto": "Auto", "linear": "Linear", "log": "Logarithmic", "reverse-log": "ReverseLogarithmic"}
DEFAULT_RANGES = "learning_rate=1e-5..1e-3:log, per_device_train_batch_size=4|8|16"
GRAMMAR = "name=low..high[:log|:linear|:reverse-log] or name=a|b|c, comma-separated"
# SageMaker's limits: names are 32-character hyperparameter keys, at most 30 categorical values.
_MAX_VALUES = 30


class RangeError(ValueError):
    """A tuning range cannot be used; the message names it and says what is allowed."""


def _number(name: str, text: str, kind: str) -> float:
    try:
        value = float(text) if kind == "float" else int(text, 10)
    except ValueError:
        expected = "a number" if kind == "float" else "an integer"
        raise RangeError(f"tuning range {name!r}: {text!r} is not {expected}") from None
    if not math.isfinite(value):
        raise RangeError(f"tuning range {name!r}: {text!r} is not finite")
    _, low, high = contract.EVENT_HYPERPARAMETERS[name]
    if (low is not None and value < low) or (high is not None and value > high):
        raise RangeError(f"tuning range {name!r}: {text} is outside [{low:g}, {high:g}]")
    return value


def _kind(name: str) -> str:
    if name not in contract.EVENT_HYPERPARAMETERS:
        allowed = ", ".join(
            n for n, spec in contract.EVENT_HYPERPARAMETERS.items() if spec[0] in ("float", "int")
        )
        raise RangeError(
            f"tuning range {name!r}: not a train.py argument that can be tuned; tunable: {allowed}"
        )
    kind = contract.EVENT_HYPERPARAMETERS[name][0]
    if kind not in ("float", "int"):
        raise RangeError(f"tuning range {name!r}: only numeric arguments are tuned, {name!r} is {kind}")
    return kind


def _range(name: str, kind: str, text: str) -> tuple[str, dict[str, str]]:
    bounds, _, scaling_text = text.partition(":")
    low_text, _, high_text = (part.strip() for part in bounds.partition(".."))
    scaling = SCALINGS.get(scaling_text.strip() or "auto")
    if scaling is None:
        raise RangeError(
            f"tuning range {name!r}: scaling {scaling_text!r} is not one of {', '.join(SCALINGS)}"
        )
    low, high = _number(name, low_text, kind), _number(name, high_text, kind)
    if not low < high:
        raise RangeError(f"tuning range {name!r}: {low_text}..{high_text} must go from low to high")
    if scaling == "Logarithmic" and low <= 0:
        raise RangeError(f"tuning range {name!r}: a logarithmic range must start above 0")
    if scaling == "ReverseLogarithmic" and (kind == "int" or low < 0 or high >= 1):
        raise RangeError(f"tuning range {name!r}: a reverse-log range is continuous and lies within [0, 1)")
    family = "ContinuousParameterRanges" if kind == "float" else "IntegerParameterRanges"
    return family, {"Name": name, "MinValue": low_text, "MaxValue": high_text, "ScalingType": scaling}


def _categorical(name: str, kind: str, text: str) -> dict[str, Any]:
    values = [value.strip() for value in text.split("|")]
    for value in values:
        _number(name, value, kind)
    if len(values) < 2 or len(set(values)) != len(values) or len(values) > _MAX_VALUES:
        raise RangeError(
            f"tuning range {name!r}: give 2 to {_MAX_VALUES} different values (a single value is a "
            "static hyperparameter: set it in the configuration instead)"
        )
    return {"Name": name, "Values": values}


def parse_ranges(spec: str) -> dict[str, list[dict[str, Any]]]:
    """``tuning_ranges`` as CreateHyperParameterTuningJob's ``ParameterRanges``.

    ``learning_rate=1e-5..1e-3:log`` is a continuous range (an integer one for integer arguments),
    ``per_device_train_batch_size=4|8|16`` a categorical one; values keep their spelling.
    """
    ranges: dict[str, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for item in (part.strip() for part in spec.split(",")):
        if not item:
            continue
        name, equals, text = (part.strip() for part in item.partition("="))
        if not equals or not text:
            raise RangeError(f"tuning range {item!r} is not {GRAMMAR}")
        if name in seen:
            raise RangeError(f"tuning range {name!r} is given twice")
        seen.add(name)
        kind = _kind(name)
        if ".." in text:
            family, entry = _range(name, kind, text)
            ranges.setdefault(family, []).append(entry)
        else:
            ranges.setdefault("CategoricalParameterRanges", []).append(_categorical(name, kind, text))
    if not seen:
        raise RangeError(f"tuning ranges are empty; give at least one: {GRAMMAR}")
    return ranges


def tuned_names(ranges: dict[str, list[dict[str, Any]]]) -> set[str]:
    """The hyperparameters a tuning job sets per trial (they leave the static hyperparameters)."""
    return {entry["Name"] for entries in ranges.values() for entry in entries}
