"""The sources (ESC-50, FSD50K, your own folder; for speech, Common Voice and LibriSpeech) as lists of
candidate clips with labels (or transcriptions) and splits.

URLs and archive layouts are constants at the top of each source's module, so a mirror or a new release is
a one-line change (or ``--source-url`` at run time).
"""

from __future__ import annotations

from collections.abc import Callable

from .common import LABEL_LEVELS, Candidate, Reader, SourceOptions, SourceSet
from .commonvoice import commonvoice
from .esc50 import esc50
from .folder import folder
from .fsd50k import fsd50k, label_ancestry, leaf_labels, map_labels, most_specific
from .librispeech import LIBRISPEECH_SUBSETS, librispeech

SOURCES: dict[str, Callable[[SourceOptions], SourceSet]] = {
    "esc50": esc50,
    "fsd50k": fsd50k,
    "folder": folder,
    "commonvoice": commonvoice,
    "librispeech": librispeech,
}
# The speech datasets: transcriptions and speakers, no labels; they stage for --task asr only.
SPEECH_SOURCES = ("commonvoice", "librispeech")

__all__ = [
    "LABEL_LEVELS",
    "LIBRISPEECH_SUBSETS",
    "SOURCES",
    "SPEECH_SOURCES",
    "Candidate",
    "Reader",
    "SourceOptions",
    "SourceSet",
    "label_ancestry",
    "leaf_labels",
    "map_labels",
    "most_specific",
]
