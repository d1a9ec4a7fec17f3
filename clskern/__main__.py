"""``python -m clskern``: the ``clskern`` command."""

import sys

from .cli.main import main

sys.exit(main())
