"""Dataset staging: catalogue datasets and plain folders into the ``audiofolder`` layout.

The entry point is ``python -m staging`` (``staging.cli``); the staging build runs it. The package is
deliberately not called ``datasets``: a ``datasets`` folder at the repository's root would shadow Hugging
Face ``datasets``, which transformers' Trainer imports.
"""

from __future__ import annotations

from common import contract

SPLITS = contract.DATASET_CHANNELS  # each split folder is the training job channel of that name
MANIFEST = contract.MANIFEST_FILE
# What a staged dataset is for: one label per clip, as <split>/<label>/<clip> (the default); any number of
# labels per clip, as <split>/<clip> listed with its labels in <split>/METADATA_FILE; or speech recognition,
# as <split>/<clip> listed with its transcription (and speaker, when known) in <split>/METADATA_FILE.
CLASSIFICATION = "classification"
MULTILABEL = "multilabel"
ASR = "asr"
TASKS = (CLASSIFICATION, MULTILABEL, ASR)
# The tasks whose split folders hold their clips directly, listed in a metadata file.
LISTED_TASKS = (MULTILABEL, ASR)


class StagingError(Exception):
    """A problem the user can fix (bad option, bad CSV, unreachable source); printed as one line."""
