"""``python cli.py ...`` is the same program as the ``rsfm`` console script."""

import sys

from rsfm.main import main

if __name__ == "__main__":
    sys.exit(main())
