"""``python -m warpbench.cli``, as the ``warpbench`` script."""

import sys

from warpbench.cli import main

sys.exit(main())
