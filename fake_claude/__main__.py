from __future__ import annotations

import sys

from fake_claude.cli import main

sys.exit(main())
