"""`python -m proctree.guardian`: the guardian process (see proctree._guardian)."""

from __future__ import annotations

import sys

from ._guardian import main

if __name__ == "__main__":
    sys.exit(main())
