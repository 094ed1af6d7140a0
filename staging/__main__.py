"""``python -m staging SOURCE --to DESTINATION``: the staging build's command (``staging.cli``)."""

import sys

from staging.cli import main

if __name__ == "__main__":
    sys.exit(main())
