"""The Edit button's modal: one text input for the instruction, then an edit job
(`Studio.edit`).

A modal's submission is an interaction of its own that names the modal's custom_id
(`atelier:edit-modal:JOB:IMAGE`); it is answered from that id alone (`submit_edit_modal`, called
for every interaction), not from a modal object kept in memory, so a modal left open for longer
than 15 minutes or across a restart still makes its edit. The button carries the job and image
in its custom_id too, so it opens the modal after a restart.

Discord's limits (docs/interactions/receiving-and-responding.mdx, "Modal": title ≤ 45 characters,
custom_id ≤ 100; docs/components/reference.mdx, "Text Input": label ≤ 45, placeholder ≤ 100,
max_length ≤ 4000) hold by construction: the title is at most "Edit image 4 of job " and a
19-digit id (39 characters); the instruction's max_length is the editing model's prompt limit
(`bot.editing.instruction_limit`).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import discord

from bot.editing import NO_EDITING_MODEL, instruction_limit
from bot.errors import UserError, report_error
from bot.permissions import admit
from bot.targets import InteractionTarget

if TYPE_CHECKING:
    from bot.studio import Studio

_CUSTOM_ID = re.compile(r"atelier:edit-modal:(?P<job>\d{1,19}):(?P<index>\d)")
_INSTRUCTION = "instruction"


class EditModal(discord.ui.Modal):
    """ "Edit image N of job J": what should change (at most `max_length` characters)."""

    def __init__(self, job_id: int, index: int, max_length: int) -> None:
        super().__init__(
            title=f"Edit image {index + 1} of job {job_id}",
            custom_id=f"atelier:edit-modal:{job_id}:{index}",
            timeout=None,
        )
        self.add_item(
            discord.ui.TextInput(
                label="What should change?",
                style=discord.TextStyle.paragraph,
                placeholder="make it a winter scene; keep the fox as it is",
                max_length=max_length,
                custom_id=_INSTRUCTION,
            )
        )


async def open_edit_modal(
    studio: Studio, interaction: discord.Interaction, job_id: int, index: int
) -> None:
    """Answer an Edit button's click with the modal, or with why it cannot make an edit: who
    may not, no editing model, a job deleted or without that image."""
    try:
        await admit(studio, interaction.user, interaction.guild_id)
        model = studio.editing_model()
        if model is None:  # the owner took it away since the result was posted
            raise UserError(NO_EDITING_MODEL)
        studio.check_image(await studio.job(job_id, init_image=False), index)
        modal = EditModal(job_id, index, instruction_limit(studio.settings.catalogue, model))
        await interaction.response.send_modal(modal)
        modal.stop()  # its submission is answered from its custom_id (`submit_edit_modal`)
    except Exception as error:
        await report_error(interaction, error)


async def submit_edit_modal(studio: Studio, interaction: discord.Interaction) -> None:
    """Make the edit an Edit modal's submission asks for; any other interaction is left alone."""
    data: Mapping[str, Any] = interaction.data or {}
    if interaction.type is not discord.InteractionType.modal_submit:
        return
    match = _CUSTOM_ID.fullmatch(str(data.get("custom_id", "")))
    if match is None:
        return
    instruction = next(_values(data.get("components", []), _INSTRUCTION), "")
    try:
        record = await studio.job(int(match["job"]))
        await studio.edit(
            record,
            int(match["index"]),
            instruction,
            interaction.user,
            InteractionTarget(interaction.client, interaction),
            guild_id=interaction.guild_id,
            channel_id=interaction.channel_id,
            answer_first=functools.partial(interaction.response.defer, thinking=True),
        )
    except Exception as error:
        await report_error(interaction, error)


def _values(components: Any, custom_id: str) -> Iterator[str]:
    """The submitted values of the text inputs named `custom_id` among a modal's components
    (in action rows or labels, docs/components/reference.mdx)."""
    for component in components if isinstance(components, list) else []:
        if not isinstance(component, Mapping):
            continue
        if component.get("custom_id") == custom_id and isinstance(component.get("value"), str):
            yield component["value"]
        yield from _values(component.get("components"), custom_id)
        yield from _values([component["component"]] if "component" in component else [], custom_id)
