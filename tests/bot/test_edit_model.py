"""Which model edits (`[edit] model`, else the first Kontext, then klein that may run), the
configuration's sentences for one that cannot, and the job an edit makes (`bot.editing`)."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from bot.config import ConfigError, settings_from_mapping
from bot.editing import edit_request, editing_model
from bot.errors import UserError
from generation.hosted.catalogue import HOSTED_MODELS
from generation.jobs import JobOwner, JobRecord, JobStatus
from generation.models import Catalogue
from generation.request import JobKind, build_request

CATALOGUE = Catalogue.builtin().with_hosted(HOSTED_MODELS)
API = {"BFL_API_KEY": "bfl-test-key"}


def problems(edit: dict[str, object], env: dict[str, str] | None = None) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"edit": edit}, env or {})
    return caught.value.problems


def test_a_model_that_cannot_edit_is_refused_with_the_reason() -> None:
    assert problems({"model": "no-such-model"}) == [
        "`edit.model` no-such-model is not a configured model."
    ]
    assert problems({"model": "flux-kontext-pro"}) == [
        "`edit.model` flux-kontext-pro is a Black Forest Labs API model: set BFL_API_KEY to use it."
    ]
    assert "takes no reference image" in problems({"model": "flux-pro-1.1"}, API)[0]
    settings = settings_from_mapping({"edit": {"model": "flux-kontext-pro"}}, API)
    assert settings.edit.model == "flux-kontext-pro"
    assert settings_from_mapping({}, {}).edit.model is None


def test_the_default_is_the_first_kontext_then_klein_that_may_run() -> None:
    def only(*models: str):
        return lambda model: model in models

    everything = only(*CATALOGUE, *CATALOGUE.hosted)
    assert editing_model(None, CATALOGUE, everything) == "flux-kontext-dev"
    assert editing_model(None, CATALOGUE, only("flux-dev", "flux2-klein-9b")) == "flux2-klein-9b"
    assert editing_model(None, CATALOGUE, only("playground-v2.5", "flux-kontext-pro")) is None
    assert editing_model("flux-kontext-pro", CATALOGUE, everything) == "flux-kontext-pro"
    # configured but no GPU may run it: no editing (not silently another model)
    assert editing_model("flux2-klein-4b", CATALOGUE, only("flux-kontext-dev")) is None


def _record(model: str, width: int, height: int) -> JobRecord:
    request = build_request(CATALOGUE, prompt="a fox", model=model, width=width, height=height)
    return JobRecord(41, JobOwner(7), request, JobStatus.DONE, queued_at=0.0)


def _png(width: int, height: int) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), (90, 40, 20)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_an_edit_is_one_image_at_the_models_native_size_at_the_images_aspect() -> None:
    parent = _record("playground-v2.5", 1344, 768)
    image = _png(1344, 768)
    for model in ("flux-kontext-dev", "flux2-klein-4b"):
        edit = edit_request(CATALOGUE, model, parent, 0, image, "make it snow")
        assert edit.model == model
        assert (edit.kind, edit.parent_job, edit.parent_image) == (JobKind.EDIT, 41, 0)
        assert edit.input_images == (image,)
        assert edit.count == 1
        assert (edit.width, edit.height) == CATALOGUE[model].size_for_aspect(1344, 768)
        assert edit.width > edit.height
    hosted = edit_request(CATALOGUE, "flux-kontext-pro", parent, 0, image, "make it snow")
    assert (hosted.model, hosted.input_images) == ("flux-kontext-pro", (image,))


def test_an_instruction_the_model_cannot_take_is_refused_as_an_instruction() -> None:
    parent = _record("flux-dev", 1024, 1024)
    limit = CATALOGUE["flux-kontext-dev"].limits.max_prompt_chars
    with pytest.raises(UserError, match="The instruction is empty"):
        edit_request(CATALOGUE, "flux-kontext-dev", parent, 0, _png(64, 64), "  ")
    with pytest.raises(UserError, match=f"at most {limit:,}"):
        edit_request(CATALOGUE, "flux-kontext-dev", parent, 0, _png(64, 64), "x" * (limit + 1))


def test_an_editing_model_no_gpu_may_run_is_a_configuration_problem() -> None:
    pinned = [{"device": "cpu", "max_models": 1, "models": ["playground-v2.5"]}]
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"edit": {"model": "flux-kontext-dev"}, "gpus": pinned}, {})
    assert caught.value.problems == [
        "`edit.model` flux-kontext-dev is on no GPU's `models` list, so no GPU here may run it: "
        "add it to a [[gpus]] table's `models` or name another model."
    ]
    on_a_gpu = [{"device": "cpu", "max_models": 1, "models": ["flux-kontext-dev"]}]
    settings = settings_from_mapping({"edit": {"model": "flux-kontext-dev"}, "gpus": on_a_gpu}, {})
    assert settings.edit.model == "flux-kontext-dev"
