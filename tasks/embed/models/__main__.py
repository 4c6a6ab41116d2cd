"""``python -m tasks.embed.models``: see :mod:`tasks.embed.models.cli`."""

import logging
import sys

from tasks.embed.models.cli import main

logging.basicConfig(level=logging.INFO, format="%(message)s")
sys.exit(main())
