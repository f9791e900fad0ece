"""The fake's stdin reader: readline(0) takes what is already written without waiting.

The fake says "idle" only when no prompt waits, so it must see prompts already in the pipe;
before, a timeout of 0 returned at once without looking at the pipe."""

from __future__ import annotations

import os
import sys

import pytest

from fake_claude.stdio import TIMEOUT, _PosixLineReader

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="select() on a pipe: POSIX")


def test_readline_zero_takes_written_lines_then_times_out() -> None:
    read_end, write_end = os.pipe()
    try:
        reader = _PosixLineReader(read_end)
        assert reader.readline(0) is TIMEOUT  # nothing written yet
        os.write(write_end, b'{"type": "user"}\nhalf a li')
        assert reader.readline(0) == b'{"type": "user"}'
        assert reader.readline(0) is TIMEOUT  # a partial line waits for its end
        os.write(write_end, b"ne\n")
        assert reader.readline(0) == b"half a line"
        os.close(write_end)
        write_end = -1
        assert reader.readline(0) is None  # EOF
    finally:
        os.close(read_end)
        if write_end >= 0:
            os.close(write_end)
