"""Every documented end of an API task, and the sentence a person reads for it.

Sources: BFL's get_result reference (`status` is one of "Task not found", "Pending",
"Request Moderated", "Content Moderated", "Ready", "Error"; BFL's own example client also treats
"Failed" as an error) and its error reference (400, 401, 402, 403, 422, 429, 500, 503).
429 and 5xx are not outcomes: the backend waits and retries them.
"""

from __future__ import annotations

from enum import StrEnum


class Outcome(StrEnum):
    READY = "ready"
    REQUEST_MODERATED = "request_moderated"  # refused before generating (prompt or input)
    CONTENT_MODERATED = "content_moderated"  # the output was blocked
    FAILED = "failed"  # status Error / Failed
    NOT_FOUND = "task_not_found"
    REFUSED = "refused"  # 400/422: a request Atelier should not have sent (a bug here)
    KEY_REFUSED = "key_refused"  # 401/403
    NO_CREDITS = "no_credits"  # 402, or paused after one
    EXPIRED = "sample_expired"  # Ready, but the signed sample URL had expired
    UNAVAILABLE = "unavailable"  # 5xx or no connection for longer than the backend waits
    TIMED_OUT = "timed_out"  # still Pending after `Timing.max_pending`
    BAD_REPLY = "bad_reply"  # a reply that breaks the documented shape
    UNCONFIRMED = "unconfirmed"  # submitted, but its reply was lost: possibly made and charged


SENTENCES = {
    Outcome.REQUEST_MODERATED: (
        "Black Forest Labs' moderation refused this request (its prompt or a reference image) "
        "before making anything."
    ),
    Outcome.CONTENT_MODERATED: (
        "Black Forest Labs' moderation blocked the image it made, so there is nothing to show."
    ),
    Outcome.FAILED: "Black Forest Labs' API reported an error while making this image.",
    Outcome.NOT_FOUND: "Black Forest Labs' API no longer knows this task; its image is lost.",
    Outcome.REFUSED: (
        "The API refused this request; that is a fault in Atelier, and the admins can read the "
        "details in the bot's log."
    ),
    Outcome.KEY_REFUSED: "The API key was refused; the admins have been told.",
    Outcome.NO_CREDITS: (
        "The Black Forest Labs account is out of credits: API models are paused until an "
        "admin resumes them."
    ),
    Outcome.EXPIRED: (
        "The image was ready, but its download link had expired (they last 10 minutes) before "
        "Atelier could fetch it."
    ),
    Outcome.UNAVAILABLE: "Black Forest Labs' API stayed unavailable; please try again later.",
    Outcome.TIMED_OUT: (
        "Black Forest Labs' API was still working on this image after 30 minutes, so Atelier "
        "stopped waiting for it; please try again later."
    ),
    Outcome.BAD_REPLY: (
        "The API sent a reply Atelier cannot use; the admins can read the details in the log."
    ),
    Outcome.UNCONFIRMED: (
        "Atelier sent this image to Black Forest Labs' API but never got its answer (the bot "
        "stopped or the connection broke), so it cannot tell whether the image was made. It "
        "was not sent again, so it is never paid twice; its estimated cost counts on the "
        "budgets, as BFL may have charged it."
    ),
}

# What became of an image that was not made, after "Image 2 of 4 was" / "Images 2, 3 of 4 were",
# for a job whose other images were made.
_MISSING = {
    Outcome.REQUEST_MODERATED: "refused by Black Forest Labs' moderation",
    Outcome.CONTENT_MODERATED: "blocked by Black Forest Labs' moderation",
    Outcome.FAILED: "not made: Black Forest Labs' API reported an error",
    Outcome.NOT_FOUND: "lost: Black Forest Labs' API no longer knows its task",
    Outcome.EXPIRED: "not fetched before BFL's download link expired (links last 10 minutes)",
    Outcome.UNAVAILABLE: "not made: Black Forest Labs' API stayed unavailable",
    Outcome.TIMED_OUT: "not made: Black Forest Labs' API was still working after 30 minutes",
    Outcome.NO_CREDITS: "not made: the Black Forest Labs account ran out of credits",
    Outcome.KEY_REFUSED: "not made: the API key was refused (the admins have been told)",
    Outcome.UNCONFIRMED: (
        "sent, but its answer never came (the bot stopped or the connection broke): Black "
        "Forest Labs may have made and charged it, so it was not sent again and its estimated "
        "cost counts on the budgets"
    ),
}
_MISSING_FOR_ADMINS = "not made (a fault the admins can read about in the log)"


def missing_note(missing: dict[int, Outcome], count: int) -> str:
    """One sentence per kind of end for the images of a `count`-image job that were not made
    (`missing`: 0-based index → outcome), e.g. "⚠️ Image 2 of 4 was blocked by Black Forest
    Labs' moderation." The credits BFL charged for them are spent all the same."""
    by_kind: dict[str, list[int]] = {}
    for index, outcome in sorted(missing.items()):
        by_kind.setdefault(_MISSING.get(outcome, _MISSING_FOR_ADMINS), []).append(index + 1)
    lines = []
    for what, numbers in by_kind.items():
        listed = ", ".join(map(str, numbers))
        many = len(numbers) > 1
        lines.append(
            f"⚠️ Image{'s' if many else ''} {listed} of {count} {'were' if many else 'was'} {what}."
        )
    return "\n".join(lines)


# Outcomes an admin must hear about (a person cannot fix them).
FOR_ADMINS = frozenset(
    {
        Outcome.REFUSED,
        Outcome.KEY_REFUSED,
        Outcome.NO_CREDITS,
        Outcome.BAD_REPLY,
        Outcome.UNCONFIRMED,
    }
)

_STATUSES = {
    "Request Moderated": Outcome.REQUEST_MODERATED,
    "Content Moderated": Outcome.CONTENT_MODERATED,
    "Error": Outcome.FAILED,
    "Failed": Outcome.FAILED,
    "Task not found": Outcome.NOT_FOUND,
}


def for_status(status: str) -> Outcome | None:
    """The outcome a polled `status` ends a task with; None while it is still under way
    ("Pending", and "Ready" before its sample is fetched)."""
    if status in ("Pending", "Ready"):
        return None
    return _STATUSES.get(status, Outcome.BAD_REPLY)


def for_http_status(code: int) -> Outcome | None:
    """The outcome an HTTP error ends a task with; None for one to wait out (429, 5xx)."""
    if code == 429 or code >= 500:
        return None
    if code == 402:
        return Outcome.NO_CREDITS
    if code in (401, 403):
        return Outcome.KEY_REFUSED
    if code == 404:
        return Outcome.NOT_FOUND
    return Outcome.REFUSED if code in (400, 422) else Outcome.BAD_REPLY
