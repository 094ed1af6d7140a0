"""The test suite. It writes nothing into the repository, bytecode included (see conftest.py).

Set here, on the package's import, so that pytest caches no bytecode for conftest.py and the test
modules either: only this file's own cache is written before this line runs (unless the interpreter was
started with ``-B`` or ``PYTHONDONTWRITEBYTECODE``), and it exists before the session's guard looks.
"""

import sys

sys.dont_write_bytecode = True
