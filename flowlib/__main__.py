"""``python -m flowlib``: see :mod:`flowlib.cli`."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
