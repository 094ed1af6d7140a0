"""``python -m tools.rehearse``: the whole retraining loop against a local AWS emulator (``make demo``)."""

import sys

from common.cli import run_command

from .loop import main

sys.exit(run_command(main))
