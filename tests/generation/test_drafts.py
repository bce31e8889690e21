"""Drafts (`generation.drafts`) on the catalogue of the real built-in models: the draft is a
4-step klein job of the same prompt, size and seeds, recorded with the job it previews; its
Final is that job with the draft's seeds; what a draft cannot show is refused with a sentence."""

from __future__ import annotations

import io
import re
from dataclasses import replace
from pathlib import Path

import pytest
from PIL import Image

from generation.drafts import draft_note, draft_request, final_request
from generation.loras import LoraCatalogue, LoraUse
from generation.models import Catalogue
from generation.request import GenerationRequest, JobKind, RequestError, build_request
from generation.scheduler import work_units

CATALOGUE = Catalogue.builtin()


def _everywhere(model: str) -> bool:
    return True


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (96, 80), (200, 60, 30)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_draft_is_a_4_step_klein_job_of_the_same_prompt_size_and_seeds() -> None:
    final = build_request(
        CATALOGUE, prompt="a lighthouse at dusk", model="flux-dev", aspect="16:9", seed=7, count=2
    )
    draft = draft_request(CATALOGUE, final, _everywhere)
    assert draft.model == "flux2-klein-4b"
    assert draft.steps == CATALOGUE["flux2-klein-4b"].steps == 4
    assert (draft.prompt, draft.width, draft.height, draft.seeds) == (
        final.prompt,
        final.width,
        final.height,
        final.seeds,
    )
    assert draft.kind is JobKind.NEW
    assert draft.final == final

    # It is scheduled by its own size: the scheduler's prior GPU-seconds (work x cost factor)
    # are a thirtieth of the FLUX.1 [dev] job's.
    def prior(request: GenerationRequest) -> float:
        return work_units(request) * CATALOGUE[request.model].cost_factor

    assert prior(draft) * 30 < prior(final)


def test_the_draft_record_round_trips_and_older_records_read_as_before() -> None:
    final = build_request(
        CATALOGUE,
        prompt="a fox",
        model="playground-v2.5",
        negative_prompt="blurry",
        steps=30,
        seed=3,
    )
    draft = draft_request(CATALOGUE, final, _everywhere)
    assert draft.negative_prompt == ""  # klein takes none; the final keeps it
    assert GenerationRequest.from_json(draft.to_json()) == draft
    assert '"final"' not in final.to_json()  # other jobs' JSON is unchanged
    assert GenerationRequest.from_json(final.to_json()).final is None


def test_final_is_the_previewed_job_with_the_drafts_seeds_and_references() -> None:
    references = (_png(),)
    final = build_request(
        CATALOGUE, prompt="keep this logo", model="flux2-klein-9b", seed=11, input_images=references
    )
    draft = draft_request(CATALOGUE, final, _everywhere)
    assert draft.input_images == references
    assert draft.final is not None
    assert draft.final.input_images == ()  # the references are stored once, with the draft
    made = final_request(CATALOGUE, draft, 42)
    assert (made.model, made.steps, made.seeds) == ("flux2-klein-9b", final.steps, final.seeds)
    assert (made.kind, made.parent_job, made.input_images) == (JobKind.FINAL, 42, references)
    assert made.final is None
    # A rerolled draft's Final uses the seeds that draft was made with.
    rerolled = draft.with_seeds((99,))
    assert final_request(CATALOGUE, rerolled, 43).seeds == (99,)


def test_a_playground_size_klein_does_not_allow_becomes_the_nearest_at_its_aspect() -> None:
    final = build_request(
        CATALOGUE, prompt="a fox", model="playground-v2.5", width=2048, height=2048
    )
    draft = draft_request(CATALOGUE, final, _everywhere)
    spec = CATALOGUE["flux2-klein-4b"]
    assert spec.limits.allows_size(draft.width, draft.height)
    assert draft.width == draft.height
    assert final_request(CATALOGUE, draft, 1).width == 2048


def test_the_draft_note_says_where_the_draft_model_makes_another_size() -> None:
    smaller = Catalogue.from_config({"flux2-klein-4b": {"max_side": 1024}})
    final = build_request(smaller, prompt="a fox", model="playground-v2.5", width=2048, height=1536)
    draft = draft_request(smaller, final, _everywhere)
    assert (draft.width, draft.height) == (1024, 768)
    note = draft_note(draft) or ""
    assert "It is 1024x768, the nearest flux2-klein-4b makes to 2048x1536." in note
    assert "It is" not in (draft_note(draft_request(CATALOGUE, final, _everywhere)) or "")


def test_the_draft_runs_on_the_first_klein_a_gpu_here_may_run() -> None:
    final = build_request(CATALOGUE, prompt="a fox", model="flux-dev", seed=1)
    draft = draft_request(CATALOGUE, final, lambda model: model != "flux2-klein-4b")
    assert draft.model == "flux2-klein-9b"


@pytest.mark.parametrize(
    ("model", "options", "may_run", "sentence"),
    [
        ("flux-dev", {}, lambda m: "klein" not in m, "Drafts run on FLUX.2 [klein]"),
        ("flux2-klein-4b", {}, _everywhere, "is the draft model itself"),
        ("flux-dev", {"init_image": "png", "strength": 0.5}, _everywhere, "cannot start from"),
    ],
)
def test_what_a_draft_cannot_show_is_refused_with_a_sentence(
    model: str, options: dict, may_run, sentence: str
) -> None:
    if "init_image" in options:
        options = {**options, "init_image": _png()}
    final = build_request(CATALOGUE, prompt="a fox", model=model, **options)
    with pytest.raises(RequestError, match=sentence.replace("[", r"\[").replace("]", r"\]")):
        draft_request(CATALOGUE, final, may_run)


def test_a_final_the_models_limits_no_longer_admit_is_refused() -> None:
    final = build_request(CATALOGUE, prompt="a fox", model="flux-dev", steps=40, seed=1)
    draft = draft_request(CATALOGUE, final, _everywhere)
    tightened = Catalogue.from_config({"flux-dev": {"max_steps": 30, "steps": 28}})
    with pytest.raises(RequestError, match="no longer fits flux-dev"):
        final_request(tightened, draft, 5)
    with pytest.raises(RequestError, match="not a draft"):
        final_request(CATALOGUE, final, 5)


def test_a_draft_model_with_lower_limits_refuses_what_it_cannot_take() -> None:
    narrow = Catalogue.from_config(
        {"flux2-klein-4b": {"max_references": 1, "max_prompt_chars": 20}}
    )
    two = build_request(
        narrow, prompt="a fox", model="flux2-klein-9b", input_images=(_png(), _png())
    )
    with pytest.raises(RequestError, match="takes at most 1 reference images"):
        draft_request(narrow, two, _everywhere)
    long = build_request(narrow, prompt="a fox in a very long coat, at dusk", model="flux-dev")
    with pytest.raises(RequestError, match="a draft on flux2-klein-4b takes at most 20"):
        draft_request(narrow, long, _everywhere)


def test_loras_come_along_only_where_they_are_of_the_draft_models_family() -> None:
    # not downloaded: their shapes cannot be read here, so only their family decides
    loras = LoraCatalogue.from_config(
        {
            name: {"source": f"someone/{name}", "file": "w.safetensors", "family": family}
            for name, family in (("watercolour", "flux2-klein"), ("ink", "flux"))
        }
    )
    for model, lora, kept in (("flux-dev", "ink", False), ("flux2-klein-9b", "watercolour", True)):
        style = (LoraUse(lora, 0.6),)
        final = replace(build_request(CATALOGUE, prompt="a fox", model=model), loras=style)
        draft = draft_request(CATALOGUE, final, _everywhere, loras)
        assert draft.loras == (style if kept else ()), model
        assert final_request(CATALOGUE, draft, 1).loras == style  # the final keeps its LoRAs


def test_a_klein_lora_that_does_not_fit_the_draft_model_stays_out_and_the_note_says_so(
    tiny_catalogue: Catalogue, klein_loras: dict[str, Path]
) -> None:
    """A klein 9B job with a 9B LoRA (one family, wider layers) drafts on klein 4B without it
    (it would fail to load there); a LoRA that fits comes along."""
    loras = LoraCatalogue.from_config(
        {name: {"source": str(path), "family": "flux2-klein"} for name, path in klein_loras.items()}
    )
    uses = (LoraUse("fits", 0.8), LoraUse("wider", 1.0))
    final = replace(
        build_request(tiny_catalogue, prompt="a fox", model="flux2-klein-9b", seed=3), loras=uses
    )
    draft = draft_request(tiny_catalogue, final, _everywhere, loras)
    assert (draft.model, draft.loras) == ("flux2-klein-4b", (LoraUse("fits", 0.8),))
    note = draft_note(draft)
    assert note is not None
    assert "leaves out LoRA wider:1;" in note
    assert "fits" not in note
    assert final_request(tiny_catalogue, draft, 1).loras == uses


def test_the_draft_note_names_what_the_draft_leaves_out() -> None:
    loras = LoraCatalogue.from_config(
        {"fx": {"source": "/nowhere/fx.safetensors", "family": "flux"}}
    )
    final = replace(
        build_request(CATALOGUE, prompt="a fox", model="flux-dev"), loras=(LoraUse("fx", 0.7),)
    )
    assert "leaves out LoRA fx:0.7; Final keeps them" in (
        draft_note(draft_request(CATALOGUE, final, _everywhere, loras)) or ""
    )
    weighted = build_request(
        CATALOGUE, prompt="(red fox)1.3 in snow", model="playground-v2.5", negative_prompt="blur"
    )
    note = draft_note(draft_request(CATALOGUE, weighted, _everywhere)) or ""
    assert "leaves out the negative prompt, the prompt's weighting (read as plain text)" in note
    plain = build_request(CATALOGUE, prompt="a red fox in snow", model="playground-v2.5")
    assert "leaves out" not in (draft_note(draft_request(CATALOGUE, plain, _everywhere)) or "")


def test_a_draft_for_a_model_no_gpu_here_may_run_is_refused() -> None:
    final = build_request(CATALOGUE, prompt="a fox", model="flux-dev")
    with pytest.raises(RequestError, match="No GPU here may run flux-dev"):
        draft_request(CATALOGUE, final, lambda model: model != "flux-dev")


@pytest.mark.parametrize(
    ("changed", "sentence"),
    [
        ({"guidance_adjustable": False}, "its guidance would be 3.5 (you chose 7)"),
        ({"max_guidance": 5.0}, "Guidance must be between"),
        ({"max_side": 512, "native_side": 512}, "The width must be between"),
    ],
)
def test_final_refuses_rather_than_changes_what_the_person_chose(
    changed: dict, sentence: str
) -> None:
    """Like a rerun (`bot.derived.rerun_problem`): a final the model's current limits would
    change (guidance no longer adjustable) or refuse is refused with a sentence."""
    final = build_request(CATALOGUE, prompt="a fox", model="flux-dev", guidance=7.0, seed=2)
    draft = draft_request(CATALOGUE, final, _everywhere)
    with pytest.raises(RequestError, match=re.escape(sentence)):
        final_request(Catalogue.from_config({"flux-dev": changed}), draft, 7)
    assert final_request(CATALOGUE, draft, 7).guidance == 7.0
