"""`python -m studio …`: the studio's command line (see studio/cli.py)."""

import sys

from studio.cli import main

sys.exit(main())
