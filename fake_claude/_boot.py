"""Entry point the shim runs as a script under `python -I -S`.

-I -S skip site and user paths (faster start, isolated from the caller's PYTHON* variables),
so the package root is put on sys.path by hand.
"""

import os
import sys

if os.environ.get("COVERAGE_PROCESS_CONFIG"):
    # Only under coverage (its patch = ["subprocess"] sets this variable): -S skipped site, and so
    # the .pth hook that starts coverage in child processes. Run site now so the fake is measured;
    # without coverage the start-up stays as cheap as before.
    import site

    site.main()

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_extra = os.environ.get("FAKE_CLAUDE_SYS_PATH")
if _extra:
    # Where psutil lives, for platforms where identity needs it (not Linux).
    sys.path.extend(p for p in _extra.split(os.pathsep) if p)

if len(sys.argv) > 1 and sys.argv[1] == "--fake-claude-child":
    del sys.argv[1]
    from fake_claude.child import main as _main
else:
    from fake_claude.cli import main as _main

sys.exit(_main())
