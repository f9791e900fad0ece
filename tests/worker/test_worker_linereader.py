"""The observer's stdout as bounded lines: blank lines are skipped, and bounded like a line."""

from __future__ import annotations

import asyncio

import pytest

from worker.linereader import BoundedLines, EndOfStream, LineTooLong


def _lines(data: bytes, limit: int) -> list[bytes | str]:
    """Every line BoundedLines gives for `data`, then how the stream ended."""

    async def go() -> list[bytes | str]:
        stream = asyncio.StreamReader()
        stream.feed_data(data)
        stream.feed_eof()
        reader = BoundedLines(stream, limit, chunk=1024)
        out: list[bytes | str] = []
        while True:
            try:
                out.append(await reader.next_line())
            except (LineTooLong, EndOfStream) as exc:
                out.append(type(exc).__name__)
                return out

    return asyncio.run(go())


def test_blank_lines_are_skipped_and_a_last_line_without_newline_counts() -> None:
    data = b'\n\n  \r\n{"a": 1}\n\n\t\n  {"b": 2}\n{"c": 3}'
    assert _lines(data, 100) == [b'{"a": 1}', b'{"b": 2}', b'{"c": 3}', "EndOfStream"]
    assert _lines(b"\n" * 50, 100) == ["EndOfStream"]  # under the bound: nothing, then EOF


@pytest.mark.parametrize("blank", [b"\n", b" \r\n", b"\t"])
def test_more_blank_bytes_in_a_row_than_a_line_may_hold_fail_the_stream(blank: bytes) -> None:
    flood = blank * (5000 // len(blank))
    assert _lines(b'{"a": 1}\n' + flood + b'{"b": 2}\n', 4096) == [b'{"a": 1}', "LineTooLong"]


def test_the_blank_count_starts_again_after_each_line() -> None:
    # 3000 blank bytes between lines, 4096 allowed: never 4096 in a row.
    data = b"".join(b"\n" * 3000 + b'{"n": %d}\n' % i for i in range(5))
    assert _lines(data, 4096) == [b'{"n": %d}' % i for i in range(5)] + ["EndOfStream"]
