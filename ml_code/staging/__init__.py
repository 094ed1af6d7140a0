"""Dataset staging: catalogue datasets and plain folders into the ``audiofolder`` layout.

The entry point is ``python -m ml_code.stage``. This package is deliberately not called
``datasets``: ``ml_code/`` is the training container's import root, and a ``datasets`` module there
would shadow Hugging Face ``datasets``, which transformers' Trainer imports.
"""

from __future__ import annotations

from .. import contract

SPLITS = contract.DATASET_CHANNELS  # each split folder is the training job channel of that name
MANIFEST = contract.MANIFEST_FILE


class StagingError(Exception):
    """A problem the user can fix (bad option, bad CSV, unreachable source); printed as one line."""
