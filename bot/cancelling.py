"""Answering a cancel, however long the store takes to record it.

A cancel is answered once it is recorded ("🚫 Cancelled job `42`."). Where the store refuses to
record it (the database read-only, the disk full), the pool retries for as long as that lasts,
which may outlive the interaction's token (15 minutes, Discord's interaction docs): so the one
who cancelled hears at once that the cancel waits, and why, and gets the final word as a reply
while the token lives, by DM after.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

import discord

from bot.targets import is_dead_token

log = logging.getLogger(__name__)


async def answer_cancel(
    interaction: discord.Interaction, what: str, stalled: Awaitable[str], outcome: Awaitable[str]
) -> None:
    """Answer `interaction` (deferred) with what `outcome` (the cancel, then its reply) says;
    first "🚫 Cancelling `what`…" and why, where the store holds it up (`stalled`, from
    `Studio.cancel_stalled`, says so)."""
    done = asyncio.ensure_future(outcome)
    held = asyncio.ensure_future(stalled)
    try:
        await asyncio.wait({done, held}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        held.cancel()
    if not done.done():
        await send_late(
            interaction, f"🚫 Cancelling {what}… ⚠️ {held.result()} I will tell you once it is done."
        )
    await send_late(interaction, await done)


async def send_late(interaction: discord.Interaction, text: str) -> None:
    """A private follow-up to `interaction`; by DM once its token has died."""
    try:
        await interaction.followup.send(text, ephemeral=True)
        return
    except discord.HTTPException as error:
        if not is_dead_token(error):
            raise
    try:
        await interaction.user.send(text)
    except discord.HTTPException as error:  # DMs closed: the job's own message says it too
        log.warning("Could not tell %s: %s (%s)", interaction.user.id, text, error)
