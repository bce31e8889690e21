"""A finished job as messages: its images spread over as many messages as Discord's request
limit needs, each with the buttons of its own images and of the job.

Discord takes at most 25 MiB per request and 10 files per message (docs/reference.mdx,
"Uploading Files"; docs/resources/message.md, "Create Message"), besides the per-file upload limit
of the server (`bot.attachments.fit_upload` re-encodes a file only when it alone is over that).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from bot.actions import Action
from bot.attachments import Upload
from bot.targets import Message
from bot.ui.buttons import result_view
from bot.ui.embeds import result_content
from bot.ui.text import plain
from generation.jobs import JobRecord

REQUEST_BYTES = 25 * 2**20
REQUEST_RESERVE = 256 * 2**10  # the JSON payload and multipart headers besides the files
MAX_FILES = 10


def batches(
    uploads: Sequence[Upload], budget: int = REQUEST_BYTES - REQUEST_RESERVE
) -> list[list[int]]:
    """The indices of `uploads`, in order, grouped so that each group fits one request (at
    most `budget` bytes and `MAX_FILES` files; a file larger than `budget` goes alone)."""
    groups: list[list[int]] = []
    size = 0
    for index, upload in enumerate(uploads):
        if not groups or size + len(upload.data) > budget or len(groups[-1]) >= MAX_FILES:
            groups.append([])
            size = 0
        groups[-1].append(index)
        size += len(upload.data)
    return groups


def result_messages(
    record: JobRecord,
    uploads: Sequence[Upload],
    notes: Sequence[str] = (),
    actions: Collection[Action] = (),
    indexes: Sequence[int] | None = None,
) -> list[Message]:
    """The messages that show `record`'s images (`uploads`, one per image, in order; `indexes`:
    the 0-based image each is, by default 0, 1, …; a job that made fewer images than it asked
    for skips the missing ones): the first says what was made; each further one which images it
    holds. Every message has the buttons of its images and of the job (those of `actions` that
    are such buttons, and ℹ️ 🗑️)."""
    indexes = list(range(len(uploads))) if indexes is None else list(indexes)
    groups = batches(uploads)
    messages = []
    for number, group in enumerate(groups):
        images = [indexes[place] for place in group]
        if number == 0:
            content = result_content(record, notes)
        else:
            content = continuation_content(record, images)  # short by construction
        messages.append(
            Message(
                content=content,
                uploads=tuple(uploads[place] for place in group),
                view=result_view(record.id, record.request.count, actions, images),
            )
        )
    return messages


def continuation_content(record: JobRecord, images: Sequence[int]) -> str:
    """The text above a further message of a result: which images of which job."""
    shown = [str(index + 1) for index in images]
    which = f"Image {shown[0]}" if len(shown) == 1 else f"Images {', '.join(shown)}"
    return f"{which} of job `{record.id}` · **{plain(record.request.prompt, 100)}**"
