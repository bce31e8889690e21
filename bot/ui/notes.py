"""Notes under a result: what a person should know about how it was made (a cut prompt, an init
image of another shape, a rerun made with other model weights or libraries). Pure functions."""

from __future__ import annotations

from generation.drafts import draft_note
from generation.hosted.catalogue import HOSTED_MODELS
from generation.jobs import JobRecord
from generation.prompts import PromptCut
from generation.request import GenerationRequest, JobKind, init_fit_note

_UNREAD_SHOWN = 60

API_MODELS = frozenset(model.name for model in HOSTED_MODELS)  # names kept for the API


def result_notes(record: JobRecord, parent: JobRecord | None) -> list[str]:
    """The notes for a finished job; `parent` is the job it derives from, if still stored."""
    notes = [
        record.error,  # a done job's error: which of its images were not made, and why
        prompt_cut_note(record),
        init_fit_note(record.request),
        rerun_note(record, parent),
        derived_note(record, parent),
        edit_note(record.request),
        draft_note(record.request),
    ]
    return [note for note in notes if note]


def edit_note(request: GenerationRequest) -> str | None:
    """For an edit: which image of which job it changed (its lineage)."""
    if request.kind is not JobKind.EDIT or request.parent_job is None:
        return None
    image = "an image" if request.parent_image is None else f"image {request.parent_image + 1}"
    return f"✏️ An edit of {image} of job `{request.parent_job}` by {request.model}."


def request_notes(
    request: GenerationRequest, cut: PromptCut | None, negative_cut: PromptCut | None = None
) -> list[str]:
    """The notes for the first reply to a new job: where its prompt and negative prompt will be
    cut (`cut`, `negative_cut`, from `generation.prompts.PromptReader`) and what is done to its
    init image."""
    notes = [
        cut_sentence(request, cut) if cut else None,
        cut_sentence(request, negative_cut, negative=True) if negative_cut else None,
        init_fit_note(request),
        draft_note(request),
    ]
    return [note for note in notes if note]


def prompt_cut_note(record: JobRecord) -> str | None:
    """Where the text encoder stopped reading the prompt and the negative prompt, when it did
    not read all of them."""
    facts = record.facts
    if facts is None:
        return None
    notes = [
        cut_sentence(record.request, PromptCut(at, facts.prompt_limit), negative=negative)
        for at, negative in ((facts.prompt_cut_at, False), (facts.negative_cut_at, True))
        if at is not None
    ]
    return "\n".join(notes) or None


def cut_sentence(request: GenerationRequest, cut: PromptCut, *, negative: bool = False) -> str:
    text = request.negative_prompt if negative else request.prompt
    unread = text[cut.at :]
    shown = unread if len(unread) <= _UNREAD_SHOWN else unread[: _UNREAD_SHOWN - 1] + "…"
    which = "negative prompt" if negative else "prompt"
    return (
        f"✂️ {request.model} reads {cut.limit}: it does not read your {which} from “{shown}” "
        "on (put what matters first)."
    )


def derived_note(record: JobRecord, parent: JobRecord | None) -> str | None:
    """For a reroll, variation or upscale: what was changed from the parent job to fit the
    model's current limits (`bot.derived`), so nobody wonders where their negative prompt went."""
    request = record.request
    if parent is None or request.kind not in (JobKind.REROLL, JobKind.VARY, JobKind.UPSCALE):
        return None
    before = parent.request
    changes = []
    if before.negative_prompt and not request.negative_prompt:
        changes.append(f"without your negative prompt ({request.model} no longer takes one)")
    if before.scheduler != request.scheduler:
        changes.append(f"with the scheduler {request.scheduler} (not {before.scheduler})")
    if before.steps > request.steps:
        changes.append(f"with {request.steps} steps (not {before.steps})")
    if before.guidance != request.guidance:
        changes.append(f"with guidance {request.guidance:g} (not {before.guidance:g})")
    resized = (before.width, before.height) != (request.width, request.height)
    if resized and request.kind is not JobKind.UPSCALE:
        changes.append(f"at {request.width}x{request.height} (not {before.width}x{before.height})")
    if not changes:
        return None
    return (
        f"ℹ️ {request.model}'s limits changed since job `{parent.id}`, so this job ran "
        + ", ".join(changes)
        + "."
    )


def kind_label(request: GenerationRequest) -> str:
    """What a job is, as people read it: "new", "rerun", "reroll", … and "seeded rerun" for a
    rerun of an API model's job, which is never promised identical (README, "Seeded reruns")."""
    if request.kind is JobKind.RERUN and request.model in API_MODELS:
        return "seeded rerun"
    return request.kind.value


def rerun_note(record: JobRecord, parent: JobRecord | None) -> str | None:
    """For a rerun: why its images may differ from the job it reran (README, "Exact reruns").
    A seeded rerun says so whether or not its parent is still stored."""
    request = record.request
    if request.kind is not JobKind.RERUN:
        return None
    if request.model in API_MODELS:
        of = "" if request.parent_job is None else f" of job `{request.parent_job}`"
        return (
            f"🔁 Seeded rerun{of}: the same seed and parameters, sent to "
            f"`{request.model}` again; BFL may have changed the model behind that name, "
            "so the images can differ."
        )
    if parent is None or record.facts is None:
        return None
    if parent.facts is None:
        return (
            f"ℹ️ Job `{parent.id}` was made before Atelier recorded model and library versions, "
            "so this rerun may differ from it."
        )
    changes = record.facts.differences(parent.facts)
    if not changes:
        return None
    return f"⚠️ This rerun may differ from job `{parent.id}`: " + "; ".join(changes) + "."
