"""The recorder stand-in that docs/protocol-notes.md tells you to record a session with."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from protocol_recorder import write_recorder_shim


def test_recorder_shim_made_in_a_new_folder_records_a_start_and_eof(tmp_path: Path) -> None:
    # The docs say `write_recorder_shim(dir, log)`: a dir not made yet was FileNotFoundError.
    log = tmp_path / "log.jsonl"
    shim = write_recorder_shim(tmp_path / "new" / "bin", log)
    done = subprocess.run(
        [str(shim), "--output-format", "stream-json"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line)["event"] for line in log.read_text().splitlines()]
    assert events == ["start", "stdin_eof"]
