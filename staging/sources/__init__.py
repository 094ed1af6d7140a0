"""The three sources (ESC-50, FSD50K, your own folder) as lists of candidate clips with labels and splits.

URLs and archive layouts are constants at the top of each source's module, so a mirror or a new release is
a one-line change (or ``--source-url`` at run time).
"""

from __future__ import annotations

from collections.abc import Callable

from .common import LABEL_LEVELS, Candidate, Reader, SourceOptions, SourceSet
from .esc50 import esc50
from .folder import folder
from .fsd50k import fsd50k, label_ancestry, leaf_labels, map_labels, most_specific

SOURCES: dict[str, Callable[[SourceOptions], SourceSet]] = {
    "esc50": esc50,
    "fsd50k": fsd50k,
    "folder": folder,
}

__all__ = [
    "LABEL_LEVELS",
    "SOURCES",
    "Candidate",
    "Reader",
    "SourceOptions",
    "SourceSet",
    "label_ancestry",
    "leaf_labels",
    "map_labels",
    "most_specific",
]
