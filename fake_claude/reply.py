"""Deterministic reply text derived from the user's content.

Shaped like what claude-mem's observer returns (an <observation> or <summary> XML block), so a
worker that parses and stores replies stores something that reflects its input.
"""

from __future__ import annotations

import zlib


def content_text(content: object) -> str:
    """The plain text of a user message's content (string or list of blocks)."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for block in content:
            if isinstance(block, dict):
                if block.get("type") == "text":
                    parts.append(str(block.get("text", "")))
                elif block.get("type") == "tool_result":
                    parts.append(content_text(block.get("content", "")))
        return "\n".join(parts)
    return ""


def _escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def observation(prompt: str) -> str:
    words = prompt.split()
    # surrogatepass: a prompt may hold a lone surrogate (JSON allows one); the real CLI is fine.
    digest = f"{zlib.crc32(prompt.encode('utf-8', 'surrogatepass')):08x}"
    title = _escape(" ".join(words[:8]) or "(empty prompt)")
    if "summary" in prompt.lower() or "summarize" in prompt.lower():
        return (
            "<summary>"
            f"<request>{title}</request>"
            f"<investigated>{len(words)} words of input, digest {digest}</investigated>"
            "<learned>nothing new (fake claude)</learned>"
            "<completed>summary recorded</completed>"
            "<next_steps>none</next_steps>"
            f"<notes>fake-claude {digest}</notes>"
            "</summary>"
        )
    return (
        "<observation>"
        "<type>discovery</type>"
        f"<title>{title}</title>"
        f"<subtitle>digest {digest}</subtitle>"
        f"<facts><fact>input had {len(words)} words</fact><fact>digest {digest}</fact></facts>"
        f"<narrative>Observed: {_escape(' '.join(words[:40]))}</narrative>"
        "<concepts><concept>how-it-works</concept></concepts>"
        "<files_read></files_read><files_modified></files_modified>"
        "</observation>"
    )
