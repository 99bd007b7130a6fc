"""``python -m mfpde``: the same as the ``mfpde`` command."""

import sys

from mfpde.cli import main

if __name__ == "__main__":
    sys.exit(main())
