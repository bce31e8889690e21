"""Text that fits Discord's limits by construction: every message and embed the bot builds goes
through these helpers, whatever the number of jobs, people or models, and whatever people typed.

Long lists keep whole lines and end with "… and N more"; single texts are cut with "…". Limits
from Discord's documentation (``discord/discord-api-docs``): docs/resources/message.md, "Create
Message" (content) and "Embed Limits" (the rest).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import discord
from discord import app_commands

CONTENT = 2000
TITLE = 256
DESCRIPTION = 4096
FIELDS = 25
FIELD_NAME = 256
FIELD_VALUE = 1024
FOOTER = 2048
EMBED_TOTAL = 6000  # all titles, descriptions, field names and values, footers, author names
ECHO = 80  # the most of a person's input a reply repeats
# What people type as a name (a model, scheduler, GPU worker): Discord's client refuses longer
# input itself (``max_length`` of string options, docs/interactions/application-commands.mdx).
MAX_NAME_CHARS = 100
Name = app_commands.Range[str, 1, MAX_NAME_CHARS]
MAX_OPTION_CHARS = 6000  # the most a string option takes (same source)
ELLIPSIS = "…"


def clip(text: str, limit: int) -> str:
    """``text`` if it has at most ``limit`` characters, else its start and "…"."""
    return text if len(text) <= limit else text[: max(limit - 1, 0)] + ELLIPSIS


def echo(value: object, limit: int = ECHO) -> str:
    """A person's input quoted in a reply: in backticks, at most ``limit`` characters of it."""
    text = str(value).replace("`", "'").replace("\n", " ")
    return f"`{clip(text, limit)}`"


def more_line(count: int) -> str:
    return f"… and {count:,} more"


def fit_lines(
    lines: Iterable[str], limit: int, *, hidden: int = 0, empty: str = "—", sep: str = "\n"
) -> str:
    """Whole ``lines`` joined by ``sep`` (newlines), as many as fit in ``limit`` characters,
    then "… and N more" for the rest (``hidden`` counts further items not in ``lines``).
    Never empty (``empty`` when there is nothing); a single line too long is cut with "…".
    """
    kept: list[str] = []
    used = 0
    items = list(lines)
    for index, line in enumerate(items):
        missing = len(items) - index + hidden
        reserve = len(more_line(missing)) + len(sep)
        last = index == len(items) - 1 and not hidden
        room = limit - used - (len(sep) if kept else 0) - (0 if last else reserve)
        if len(line) > room:
            if kept or room < 2:
                break
            line = clip(line, room)
        kept.append(line)
        used += len(line) + (len(sep) if len(kept) > 1 else 0)
    missing = len(items) - len(kept) + hidden
    if missing:
        kept.append(more_line(missing))
    text = sep.join(kept)
    return clip(text, limit) if text.strip() else clip(empty, limit)


def fit_content(text: str) -> str:
    """Message content within Discord's 2000 characters."""
    return clip(text, CONTENT)


class FittedEmbed(discord.Embed):
    """A ``discord.Embed`` whose every text is fitted to its own limit and to what is left of
    the 6000 characters all its texts share. Set the footer first (``footer=``): later fields
    take what room is left; fields beyond 25 become one "… and N more" field.

    ``add_field`` keeps whole lines of a multi-line value; ``add_lines`` does the same for a
    list and counts ``hidden`` items that were never listed.
    """

    def __init__(
        self,
        *,
        title: str | None = None,
        description: str | None = None,
        colour: discord.Colour | int | None = None,
        footer: str | None = None,
    ) -> None:
        super().__init__(colour=colour)
        if footer:
            self.set_footer(text=footer)
        if title:
            self.title = clip(title, min(TITLE, self.room() - _UNSHOWN_RESERVE))
        if description:
            limit = min(DESCRIPTION, self.room() - _UNSHOWN_RESERVE)
            self.description = fit_lines(description.split("\n"), limit)
        self._unshown = 0

    def room(self) -> int:
        """Characters still free of the 6000 all texts of an embed share."""
        return EMBED_TOTAL - len(self)

    def describe_lines(
        self, lines: Sequence[str], *, hidden: int = 0, empty: str = "—"
    ) -> FittedEmbed:
        """The description: whole ``lines`` (items), then "… and N more"."""
        self.description = None
        limit = min(DESCRIPTION, self.room() - _UNSHOWN_RESERVE)
        self.description = fit_lines(lines, limit, hidden=hidden, empty=empty)
        return self

    def set_footer(self, *, text: Any = None, icon_url: Any = None) -> FittedEmbed:
        text = clip(str(text), min(FOOTER, self.room() + len(self.footer.text or "")))
        super().set_footer(text=text, icon_url=icon_url)
        return self

    def add_field(self, *, name: Any, value: Any, inline: bool = True) -> FittedEmbed:
        return self.add_lines(str(name), str(value).split("\n"), inline=inline)

    def add_lines(
        self,
        name: str,
        lines: Sequence[str],
        *,
        hidden: int = 0,
        empty: str = "—",
        inline: bool = False,
    ) -> FittedEmbed:
        """A field listing ``lines`` (plus "… and N more" for what does not fit)."""
        if self._unshown:
            self._count_unshown(1)
            return self
        name = clip(name.strip() or "—", FIELD_NAME)
        room = min(FIELD_VALUE, self.room() - len(name) - _UNSHOWN_RESERVE)
        if len(self.fields) >= FIELDS or room < 1:
            self._count_unshown(1)
            return self
        super().add_field(
            name=name, value=fit_lines(lines, room, hidden=hidden, empty=empty), inline=inline
        )
        return self

    def _count_unshown(self, count: int) -> None:
        """Fields that did not fit: the last field says how many (it replaces the 25th)."""
        if self._unshown or len(self.fields) >= FIELDS:
            self.remove_field(len(self.fields) - 1)
            count += 0 if self._unshown else 1
        self._unshown += count
        super().add_field(name=more_line(self._unshown), value=_UNSHOWN_VALUE, inline=False)


_UNSHOWN_VALUE = "(not shown)"
_UNSHOWN_RESERVE = len(more_line(10**9)) + len(_UNSHOWN_VALUE)
