"""Text a person wrote, shown in the bot's messages as text: never as the bot's own markup.

Prompts, negative prompts, file names, blocklist terms and search filters all pass through
`plain` wherever the bot echoes them, so `[text](https://…)` stays visible text instead of a
link in the bot's message, `**` stays two asterisks, and `<@id>`, `<#id>` or `<t:…>` show as
typed instead of as a mention, a channel or a timestamp.
"""

from __future__ import annotations

import re

import discord

_ANGLE = re.compile(r"<")  # mentions, channels, timestamps, slash-command links, custom emoji
ELLIPSIS = "…"


def plain(text: str, limit: int | None = None) -> str:
    """`text` with Discord's Markdown, masked links and mention syntax escaped; with `limit`,
    cut (with "…") so that the escaped result has at most `limit` characters."""
    escaped = _escape(text)
    if limit is None or len(escaped) <= limit:
        return escaped
    low, high = 0, min(len(text), limit)  # the longest prefix whose escaped form fits
    while low < high:
        middle = (low + high + 1) // 2
        if len(_escape(text[:middle])) < limit:
            low = middle
        else:
            high = middle - 1
    return _escape(text[:low]) + ELLIPSIS if limit > 0 else ""


def _escape(text: str) -> str:
    escaped = discord.utils.escape_mentions(discord.utils.escape_markdown(text))
    return _ANGLE.sub(r"\\<", escaped)
