"""Entry point for `python -m harness`."""

from __future__ import annotations

import sys

if __name__ == "__main__":
    try:
        from harness.pipes import protect_standard_streams

        protect_standard_streams()
        from harness.cli import main

        code = main()
    except KeyboardInterrupt:
        # Only a Ctrl-C while Python still imports gets here (a run ends its processes and
        # reports the interrupt itself): nothing was started, so no traceback.
        print("interrupted", file=sys.stderr)
        code = 130
    sys.exit(code)
