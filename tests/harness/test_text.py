"""Foreign text (argv of processes we did not write) as the reports show it."""

from __future__ import annotations

from harness.text import printable, printable_argv


def test_undecodable_bytes_and_control_characters_become_escapes() -> None:
    raw = b"sleep\xff\x1b[31m\nnext\tcol\x7f"
    assert (
        printable(raw.decode("utf-8", "surrogateescape")) == "sleep\\xff\\x1b[31m\\nnext\\tcol\\x7f"
    )
    assert printable("\ud800 from json") == "\\ud800 from json"  # a surrogate from no byte
    text = printable(raw.decode("utf-8", "surrogateescape"))
    text.encode("utf-8")  # writable as UTF-8 (raises otherwise)
    assert text.isprintable()


def test_ordinary_text_is_kept_as_it_is() -> None:
    argv = ["/usr/bin/python3", "-m", "fake_claude", "--prompt", "café 日本 ✓", "a b"]
    assert printable_argv(argv) == argv


def test_an_exception_without_a_message_says_what_it_means():
    """A soak whose worker was stopped (SIGSTOP) failed its sessions with `TimeoutError: `."""
    import asyncio

    from harness.text import describe

    assert describe(ValueError("bad")) == "ValueError: bad"
    assert describe(asyncio.TimeoutError()).startswith("TimeoutError: no answer in time")
    assert describe(RuntimeError()) == "RuntimeError: no message"
