"""Text a person wrote, shown in the bot's messages as text: never as the bot's own markup.

Prompts, negative prompts, file names, blocklist terms and search filters all pass through
`plain` wherever the bot echoes them, so `[text](https://…)` stays visible text instead of a
link in the bot's message, `**` stays two asterisks, and `<@id>`, `<#id>` or `<t:…>` show as
typed instead of as a mention, a channel or a timestamp. A URL's `://` becomes `\\://`, shown
as typed but neither a link nor a preview (Discord links and previews only `scheme://…`).
"""

from __future__ import annotations

import re

import discord

from bot.ui.fit import ELLIPSIS

# Every character Discord's Markdown gives a meaning: emphasis, spoilers, code, masked links,
# headings, quotes, and `<` for mentions, channels, timestamps, command links and custom emoji.
# (discord.utils.escape_markdown escapes one masked link per text and skips what it spans.)
_SPECIAL = re.compile(r"([\\*_~|`\[\]()<>#]|:(?=//))")
_QUOTED = re.compile(r"""('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")""")  # repr of a value


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


def with_code_spans(message: str) -> str:
    """A sentence made elsewhere (the engine's) that may quote what a person typed: escaped like
    `plain`, except the backticks of its own `code spans`; what it quotes (`'…'` or `"…"`, as
    Python's `repr` writes a value) is escaped entirely, backticks included."""
    parts = _QUOTED.split(message)  # odd items: the quoted values
    escaped = (
        _SPECIAL.sub(r"\\\1", part) if index % 2 else _SPECIAL.sub(_unless_backtick, part)
        for index, part in enumerate(parts)
    )
    return discord.utils.escape_mentions("".join(escaped))


def _unless_backtick(match: re.Match[str]) -> str:
    return match[1] if match[1] == "`" else "\\" + match[1]


def _escape(text: str) -> str:
    return discord.utils.escape_mentions(_SPECIAL.sub(r"\\\1", text))
