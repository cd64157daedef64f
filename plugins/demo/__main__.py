"""``python -m w2v.plugins.demo demo-data ...`` (see :mod:`.cli`)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
