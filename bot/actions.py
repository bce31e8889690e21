"""What a result button or reaction can do to a job, and which emoji means what."""

from __future__ import annotations

from enum import StrEnum


class Action(StrEnum):
    RERUN = "rerun"  # same seeds: identical images
    REROLL = "reroll"  # new seeds
    VARY_SUBTLE = "vary-subtle"
    VARY_STRONG = "vary-strong"
    UPSCALE = "upscale"
    EDIT = "edit"  # opens a modal for an instruction (`bot.ui.edit_modal`)
    FINAL = "final"  # a draft's job on the model it drafts for (`generation.drafts`)
    INFO = "info"  # parameters, privately
    SEND_DM = "dm"  # seeds and parameters by direct message
    DELETE = "delete"  # the author or an admin only


# Reactions act on a whole job; ✨ varies its first image subtly.
REACTIONS: dict[str, Action] = {
    "🔁": Action.RERUN,
    "🎲": Action.REROLL,
    "✨": Action.VARY_SUBTLE,
    "✉️": Action.SEND_DM,
    "✉": Action.SEND_DM,  # clients send the envelope with or without the emoji variation selector
    "❌": Action.DELETE,
}
