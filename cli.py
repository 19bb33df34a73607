"""``python cli.py ...`` is the same program as the ``rsfm`` console script (``rsfm.cli``)."""

import sys

from rsfm.cli import main

if __name__ == "__main__":
    sys.exit(main())
