"""Text that comes from other processes (argv, messages), made safe to print and to store."""

from __future__ import annotations


def printable(text: str) -> str:
    """`text` with undecodable bytes and control characters as backslash escapes.

    psutil hands over argv bytes that are not UTF-8 as lone surrogates, which no UTF-8 file,
    XML document or terminal accepts; a newline or an escape sequence in a foreign argv would
    break a table row or drive the user's terminal. Everything else is kept as it is.
    """
    if text.isprintable():
        return text  # the common case, at C speed
    try:
        raw = text.encode("utf-8", "surrogateescape")  # the bytes the process really had
    except UnicodeEncodeError:
        raw = text.encode("utf-8", "backslashreplace")  # a surrogate not from a byte
    decoded = raw.decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in decoded)


def printable_argv(argv: list[str]) -> list[str]:
    return [printable(arg) for arg in argv]


def describe(exc: BaseException) -> str:
    """`Type: message`; an exception without a message (a timeout) says what it means instead
    of ending in a bare colon."""
    text = str(exc)
    if not text and isinstance(exc, TimeoutError):  # asyncio's too, since 3.11
        text = "no answer in time (the worker may be stopped or overloaded)"
    return f"{type(exc).__name__}: {text or 'no message'}"
