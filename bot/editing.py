"""Editing an image by an instruction (`/edit`, the Edit button): which model edits, and the job
an edit makes.

The editing model is `[edit] model` where the owner names one (a local model that takes reference
images, or a Black Forest Labs API model such as `flux-kontext-pro` where `BFL_API_KEY` is set);
otherwise the first local FLUX.1 Kontext model, then the first FLUX.2 [klein] one, that some GPU
here may run. A configured model no GPU here may run (none of `[[gpus]]` lists it) is refused by
the configuration check: edits never fall back to another model than the one named. An edit is a
new job of that model: the instruction is its prompt, the edited image
its one reference, one image with a new seed at the model's native size at the image's aspect
(an API model follows the reference's shape), and its lineage is `parent_job`, `parent_image`
and the kind `edit`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from bot.derived import placeholder_image
from bot.errors import UserError
from generation.hosted.validation import MAX_PROMPT_CHARS as HOSTED_MAX_PROMPT_CHARS
from generation.jobs import JobRecord
from generation.models import Catalogue
from generation.request import GenerationRequest, JobKind, RequestError, build_request

# The families tried, in order, when no editing model is configured (issue 17: "default: the
# first of Kontext / klein available").
EDIT_FAMILIES = ("flux-kontext", "flux2-klein")
NO_EDITING_MODEL = (
    "Editing is not available here: no model that edits images (FLUX.1 Kontext or "
    "FLUX.2 [klein]) runs on this bot's GPUs."
)
# docs/components/reference.mdx, "Text Input": max_length 1-4000.
MAX_TEXT_INPUT_CHARS = 4000


def instruction_limit(catalogue: Catalogue, model: str) -> int:
    """The most characters an instruction for `model` may have: its prompt limit (within what a
    modal's text input takes)."""
    most = HOSTED_MAX_PROMPT_CHARS
    if model in catalogue:
        most = catalogue[model].limits.max_prompt_chars
    return min(most, MAX_TEXT_INPUT_CHARS)


def takes_reference(catalogue: Catalogue, model: str) -> bool:
    """Whether `model` (local or hosted, as offered by `catalogue`) takes a reference image."""
    if model in catalogue.hosted:
        return catalogue.hosted[model].max_inputs > 0
    return model in catalogue and catalogue[model].limits.max_references > 0


def config_problem(
    model: str,
    catalogue: Catalogue,
    hosted_names: frozenset[str],
    may_run: Callable[[str], bool] = lambda model: True,
) -> str | None:
    """Why `[edit] model = model` cannot work (a sentence for the configuration check), None
    where it can. `hosted_names`: every API model's name, offered here or not; `may_run`:
    whether some configured GPU may run a local model."""
    if model in catalogue or model in catalogue.hosted:
        if not takes_reference(catalogue, model):
            return (
                f"`edit.model` {model} takes no reference image, so it cannot edit: name a "
                "FLUX.1 Kontext or FLUX.2 [klein] model (or leave it out)."
            )
        if model in catalogue and not may_run(model):
            return (
                f"`edit.model` {model} is on no GPU's `models` list, so no GPU here may run it: "
                "add it to a [[gpus]] table's `models` or name another model."
            )
        return None
    if model in hosted_names:
        return f"`edit.model` {model} is a Black Forest Labs API model: set BFL_API_KEY to use it."
    return f"`edit.model` {model} is not a configured model."


def editing_model(
    configured: str | None, catalogue: Catalogue, may_run: Callable[[str], bool]
) -> str | None:
    """The model edits use now (see the module's docstring), None where none may run."""
    if configured is not None:
        usable = takes_reference(catalogue, configured) and may_run(configured)
        return configured if usable else None
    for family in EDIT_FAMILIES:
        for name in catalogue:
            spec = catalogue[name]
            if spec.family == family and spec.limits.max_references and may_run(name):
                return name
    return None


def edit_request(
    catalogue: Catalogue,
    model: str,
    parent: JobRecord,
    index: int,
    image: bytes,
    instruction: str,
) -> GenerationRequest:
    """The job that edits image `index` (0-based; its canonical PNG `image`) of `parent` by
    `instruction` with `model`. Raises `UserError` with the reason where the model refuses it
    (an empty or too long instruction, an image the API takes not)."""
    size: dict[str, int] = {}
    if model in catalogue:  # a local model: its native size at the image's aspect
        shown = parent.request
        width, height = catalogue[model].size_for_aspect(shown.width, shown.height)
        size = {"width": width, "height": height}
    try:
        request = build_request(
            catalogue,
            prompt=instruction,
            model=model,
            input_images=(image,),
            parent_job=parent.id,
            kind=JobKind.EDIT,
            **size,
        )
    except RequestError as error:
        message = error.message.replace("The prompt", "The instruction")
        raise UserError(message.replace("Reference image 1 is", "That image is")) from None
    return replace(request, parent_image=index)


def edit_problem(catalogue: Catalogue, model: str, parent: JobRecord, instruction: str) -> None:
    """Raise `UserError` where no edit of `parent`'s images by `instruction` is valid (the
    instruction, or images too small or too elongated to be a reference); reads no image."""
    shown = parent.request
    placeholder = placeholder_image(shown.width, shown.height)
    edit_request(catalogue, model, parent, 0, placeholder, instruction)


def edit_offered(catalogue: Catalogue, model: str | None, parent: JobRecord) -> bool:
    """Whether `parent`'s result offers Edit: an editing model runs and it makes a valid job."""
    if model is None:
        return False
    try:
        edit_problem(catalogue, model, parent, "edit")
    except UserError:
        return False
    return True
