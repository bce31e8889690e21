"""One place that turns any error into a reply: short and friendly for domain errors (a
database or image folder that cannot be used right now included: the write that failed changed
nothing), a generic sentence with an error id (also logged, with the traceback) for everything
unexpected.

Handlers raise `UserError` subclasses (or let engine errors through) and never format replies
themselves; `report_error` answers ephemerally, whether or not the interaction was answered yet.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass

import discord
from discord import app_commands

from bot.ui.fit import ECHO, clip, echo, fit_content, fit_lines
from bot.ui.text import with_code_spans
from generation.errors import EngineError
from generation.jobs import StoreUnavailable
from generation.models import UnknownModel
from generation.request import RequestError

log = logging.getLogger(__name__)
_THINKING = discord.InteractionResponseType.deferred_channel_message
MODELS_LISTED = 1000  # characters of model names an error reply lists


class UserError(Exception):
    """A failure caused by what someone asked; `message` is shown to them as is."""

    def __init__(self, message: str) -> None:
        self.message = message
        super().__init__(message)


class NotFound(UserError):
    """The job, image or message does not exist (or no longer does)."""


class NotYours(UserError):
    """Someone tried to change another person's job."""


class Banned(UserError):
    """The person is banned from this bot."""


class NotAllowedHere(UserError):
    """The channel (or a DM) is not one where the bot takes commands."""


class NotAPerson(UserError):
    """A bot account tried to act; it gets no answer (`bot.permissions.admit`)."""


class Blocked(UserError):
    """The prompt contains a word or pattern the server has blocked."""


@dataclass(frozen=True, slots=True)
class ErrorReply:
    """What the person is told; `error_id` is set for unexpected errors (and logged)."""

    message: str
    error_id: str | None = None


def describe(error: BaseException) -> ErrorReply:
    """The reply for an error, within Discord's 2000 characters whatever was typed (what is
    echoed is shortened); unexpected errors are logged here with a fresh error id."""
    reply = _describe(_unwrap(error))
    return ErrorReply(fit_content(reply.message), reply.error_id)


def _describe(error: BaseException) -> ErrorReply:
    if isinstance(error, UnknownModel):
        sentence = f"Unknown model {clip(error.name, ECHO)!r}. Available models: {_models(error)}."
        return ErrorReply(with_code_spans(sentence))
    if isinstance(error, UserError):
        return ErrorReply(error.message)  # composed by the bot, what people wrote in `plain`
    if isinstance(error, RequestError):  # the engine's sentences may quote what was typed
        return ErrorReply(with_code_spans(error.message))
    if isinstance(error, EngineError):
        return ErrorReply(with_code_spans(str(error)))
    if isinstance(error, StoreUnavailable):  # what failed, in storage's sentence: nothing written
        return ErrorReply(f"⚠️ {error} Nothing was changed; try again in a minute.")
    if isinstance(error, app_commands.CommandOnCooldown):
        return ErrorReply(f"Slow down a little: try again in {error.retry_after:.0f} s.")
    if isinstance(error, app_commands.CheckFailure):
        return ErrorReply(str(error) or "You are not allowed to do that.")
    if isinstance(error, app_commands.TransformerError):
        return ErrorReply(f"I could not understand the value {echo(error.value)}.")
    error_id = secrets.token_hex(4)
    log.error("Unexpected error %s", error_id, exc_info=error)
    return ErrorReply(
        f"Something went wrong on my side (error id `{error_id}`). "
        "Nothing was charged to you; please try again, and tell an admin if it keeps happening.",
        error_id,
    )


async def report_error(interaction: discord.Interaction, error: BaseException) -> ErrorReply:
    """Answer `interaction` ephemerally with the reply for `error`, however far it had got."""
    reply = describe(error)
    try:
        if interaction.response.is_done():
            if interaction.response.type is _THINKING:
                # a public "thinking…" placeholder: replace it with the private reply
                await interaction.delete_original_response()
            await interaction.followup.send(reply.message, ephemeral=True)
        else:
            await interaction.response.send_message(reply.message, ephemeral=True)
    except discord.HTTPException:
        log.warning("Could not deliver an error reply for interaction %s", interaction.id)
    return reply


def install_error_handler(tree: app_commands.CommandTree) -> None:
    """Route every slash-command error through `report_error`."""

    async def on_app_command_error(
        interaction: discord.Interaction, error: app_commands.AppCommandError
    ) -> None:
        await report_error(interaction, error)

    tree.error(on_app_command_error)


def _models(error: UnknownModel) -> str:
    return fit_lines(error.known, MODELS_LISTED, sep=", ")


def _unwrap(error: BaseException) -> BaseException:
    while isinstance(error, app_commands.CommandInvokeError):
        error = error.original
    return error
