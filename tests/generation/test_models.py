"""The model catalogue: built-in entries, owner configuration, and clear configuration errors."""

from __future__ import annotations

import dataclasses

import pytest

from generation.models import (
    BUILTIN_MODELS,
    Catalogue,
    CatalogueError,
    Family,
    ModelSpec,
    UnknownModel,
    spec_table,
)


def test_builtin_models_carry_what_the_docs_promise() -> None:
    catalogue = Catalogue.builtin()
    assert list(catalogue) == [
        "playground-v2.5",
        "flux-dev",
        "flux-schnell",
        "flux2-klein-4b",
        "flux2-klein-9b",
        "flux-kontext-dev",
    ]
    playground, dev, schnell, klein4, klein9, kontext = (catalogue[name] for name in catalogue)
    assert klein4.family is klein9.family is Family.FLUX2_KLEIN
    assert kontext.family is Family.FLUX_KONTEXT
    assert klein4.source == "black-forest-labs/FLUX.2-klein-4B"
    assert (klein4.steps, klein4.guidance, klein4.limits.max_references) == (4, 1.0, 4)
    assert (kontext.steps, kontext.guidance, kontext.limits.max_references) == (28, 2.5, 1)
    assert klein4.licence == "Apache-2.0"
    assert "non-commercial" in klein9.licence
    assert "non-commercial" in kontext.licence
    assert dev.limits.max_references == playground.limits.max_references == 0
    assert playground.family is Family.PLAYGROUND
    assert dev.family is schnell.family is Family.FLUX
    assert playground.source == "playgroundai/playground-v2.5-1024px-aesthetic"
    assert (playground.steps, playground.guidance, playground.variant) == (50, 3.0, "fp16")
    assert playground.schedulers == ("edm-dpmsolver++", "edm-euler")
    assert (dev.steps, dev.guidance, dev.max_sequence_length) == (28, 3.5, 512)
    assert (schnell.steps, schnell.guidance, schnell.max_sequence_length) == (4, 0.0, 256)
    assert not schnell.limits.guidance
    assert dev.limits.guidance
    assert not dev.limits.negative_prompt
    assert playground.limits.negative_prompt
    assert all(spec.licence for spec in catalogue.values())
    assert catalogue.default is playground


def test_unknown_model_names_the_known_ones() -> None:
    with pytest.raises(UnknownModel, match=r"Available models: playground-v2\.5, flux-dev"):
        Catalogue.builtin()["sd15"]


def test_override_changes_only_the_keys_it_sets() -> None:
    catalogue = Catalogue.from_config({"flux-dev": {"source": "/models/flux-dev", "steps": 20}})
    spec = catalogue["flux-dev"]
    assert (spec.source, spec.steps, spec.is_local) == ("/models/flux-dev", 20, True)
    assert spec.guidance == 3.5
    assert spec.limits == Catalogue.builtin()["flux-dev"].limits


def test_new_model_of_a_known_family_needs_no_code() -> None:
    catalogue = Catalogue.from_config(
        {
            "my-finetune": {
                "family": "playground",
                "source": "someone/sdxl-finetune",
                "native_side": 768,
                "max_steps": 60,
                "guidance": 5.0,
            }
        }
    )
    spec = catalogue["my-finetune"]
    assert spec.family is Family.PLAYGROUND
    assert not spec.is_local
    assert (spec.native_side, spec.limits.max_steps, spec.guidance) == (768, 60, 5.0)
    assert spec.limits.guidance, "the default scale must not switch off adjustable guidance"
    assert spec.schedulers == ("edm-dpmsolver++", "edm-euler")
    assert spec.size_for_aspect(1, 1) == (768, 768)


def test_guidance_can_be_made_fixed() -> None:
    table = {"family": "flux", "source": "/m", "guidance": 0.0, "guidance_adjustable": False}
    spec = Catalogue.from_config({"fast": table})["fast"]
    assert (spec.guidance, spec.limits.guidance) == (0.0, False)


@pytest.mark.parametrize("spec", BUILTIN_MODELS, ids=lambda spec: spec.name)
def test_spec_table_round_trips(spec: ModelSpec) -> None:
    table = spec_table(spec)
    copy = Catalogue.from_config({"copy": table}, include_builtin=False)["copy"]
    assert copy == dataclasses.replace(spec, name="copy")


@pytest.mark.parametrize(
    ("models", "message"),
    [
        ({"x": {"source": "/m"}}, "`models.x` is a new model: it needs a `family` and a `source`."),
        (
            {"x": {"family": "sd3", "source": "/m"}},
            '`models.x.family` should be one of "playground", "flux", "flux2-klein" or '
            '"flux-kontext", not "sd3".',
        ),
        ({"flux-dev": {"stepz": 3}}, "Unknown setting `models.flux-dev.stepz`."),
        ({"flux-dev": {"schedulers": []}}, "`models.flux-dev.schedulers` should not be empty."),
        (
            {"flux-dev": {"steps": "thirty"}},
            '`models.flux-dev.steps` should be a whole number, not "thirty".',
        ),
        (
            {"flux-dev": {"guidance": True}},
            "`models.flux-dev.guidance` should be a number, not true.",
        ),
        (
            {"flux-dev": {"min_side": 1024, "max_side": 512}},
            "`models.flux-dev`: min_side is larger than max_side.",
        ),
        (
            {"flux-kontext-dev": {"max_references": 2}},
            "`models.flux-kontext-dev`: max_references = 2 is more than flux-kontext models "
            "take (1).",
        ),
    ],
)
def test_bad_configuration_is_refused_with_its_message(models: dict, message: str) -> None:
    with pytest.raises(CatalogueError) as caught:
        Catalogue.from_config(models)
    assert str(caught.value) == message


def test_empty_catalogue_is_refused() -> None:
    with pytest.raises(CatalogueError, match="holds no model"):
        Catalogue.from_config({}, include_builtin=False)


def test_membership_is_a_plain_yes_or_no() -> None:
    catalogue = Catalogue.builtin()
    assert "flux-dev" in catalogue
    assert "sdxl-turbo" not in catalogue


def test_the_schedulers_the_configuration_accepts_are_the_ones_each_pipeline_offers() -> None:
    from generation.models import FAMILY_SCHEDULERS
    from generation.pipelines import FluxFamily, PlaygroundFamily

    assert set(FAMILY_SCHEDULERS[Family.PLAYGROUND]) == set(PlaygroundFamily.schedulers)
    assert set(FAMILY_SCHEDULERS[Family.FLUX]) == set(FluxFamily.schedulers)
