"""``python -m ortbench`` (the folder copied to a device) or ``python -m wsol.ortbench``."""

from __future__ import annotations

import sys

from .cli import main

sys.exit(main())
