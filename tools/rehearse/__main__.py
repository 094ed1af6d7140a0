"""``python -m tools.rehearse``: the whole retraining loop against a local AWS emulator (``make demo``)."""

import sys

from .loop import main

sys.exit(main())
