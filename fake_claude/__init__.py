"""A fake `claude` CLI: speaks the stream-json protocol and misbehaves on demand.

Start-up is kept lean on purpose (the fake is spawned thousands of times per soak):
modules import only the standard library, and only what they need.
"""

from __future__ import annotations

DEFAULT_VERSION = "2.1.332"
RUN_ID_FLAG = "--fake-claude-run-id"
