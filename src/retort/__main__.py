"""``python -m retort``: the same command line as the ``retort`` console script."""

import os
import sys

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from retort.cli import main  # noqa: E402

sys.exit(main())
