"""The built-in models: Playground v2.5, FLUX.1 [dev] and [schnell], FLUX.2 [klein] 4B and 9B, and
FLUX.1 Kontext [dev] (catalogue data)."""

from __future__ import annotations

from generation.model_spec import Family, ModelLimits, ModelSpec

_SIDE_16 = {"multiple_of": 16}
_KLEIN_LIMITS = ModelLimits(
    min_side=256,
    max_side=2048,
    max_megapixels=4.2,
    max_steps=50,
    negative_prompt=False,
    guidance=False,
    min_guidance=1.0,
    max_guidance=1.0,
    max_references=4,
    **_SIDE_16,
)

BUILTIN_MODELS: tuple[ModelSpec, ...] = (
    ModelSpec(
        name="playground-v2.5",
        family=Family.PLAYGROUND,
        source="playgroundai/playground-v2.5-1024px-aesthetic",
        title="Playground v2.5 (1024px aesthetic)",
        steps=50,
        guidance=3.0,
        schedulers=("edm-dpmsolver++", "edm-euler"),
        native_side=1024,
        limits=ModelLimits(min_side=256, max_side=2048, multiple_of=64, max_megapixels=4.2),
        variant="fp16",
        licence="Playground v2.5 Community License",
        cost_factor=0.08,
    ),
    ModelSpec(
        name="flux-dev",
        family=Family.FLUX,
        source="black-forest-labs/FLUX.1-dev",
        title="FLUX.1 [dev]",
        steps=28,
        guidance=3.5,
        schedulers=("flow-euler",),
        native_side=1024,
        max_sequence_length=512,
        limits=ModelLimits(
            min_side=256, max_side=2048, max_megapixels=4.2, negative_prompt=False, **_SIDE_16
        ),
        licence="FLUX.1 [dev] Non-Commercial License",
        cost_factor=0.24,
    ),
    ModelSpec(
        name="flux-schnell",
        family=Family.FLUX,
        source="black-forest-labs/FLUX.1-schnell",
        title="FLUX.1 [schnell]",
        steps=4,
        guidance=0.0,
        schedulers=("flow-euler",),
        native_side=1024,
        max_sequence_length=256,
        limits=ModelLimits(
            min_side=256,
            max_side=2048,
            max_megapixels=4.2,
            max_steps=16,
            negative_prompt=False,
            guidance=False,
            min_guidance=0.0,
            max_guidance=0.0,
            **_SIDE_16,
        ),
        licence="Apache-2.0",
        cost_factor=0.24,
    ),
    # FLUX.2 [klein]: step-distilled to 4 steps with guidance fixed at 1.0 (BFL's model cards;
    # Flux2KleinPipeline skips classifier-free guidance for a distilled model whatever is asked).
    ModelSpec(
        name="flux2-klein-4b",
        family=Family.FLUX2_KLEIN,
        source="black-forest-labs/FLUX.2-klein-4B",
        title="FLUX.2 [klein] 4B",
        steps=4,
        guidance=1.0,
        schedulers=("flow-euler",),
        native_side=1024,
        max_sequence_length=512,
        limits=_KLEIN_LIMITS,
        licence="Apache-2.0",
        cost_factor=0.05,
    ),
    ModelSpec(
        name="flux2-klein-9b",
        family=Family.FLUX2_KLEIN,
        source="black-forest-labs/FLUX.2-klein-9B",
        title="FLUX.2 [klein] 9B",
        steps=4,
        guidance=1.0,
        schedulers=("flow-euler",),
        native_side=1024,
        max_sequence_length=512,
        limits=_KLEIN_LIMITS,
        licence="FLUX Non-Commercial License (non-commercial use only)",
        cost_factor=0.11,
    ),
    # FLUX.1 Kontext [dev]: guidance-distilled like FLUX.1 [dev]; 28 steps and guidance 2.5 are
    # the defaults of BFL's model card and of FluxKontextPipeline's example.
    ModelSpec(
        name="flux-kontext-dev",
        family=Family.FLUX_KONTEXT,
        source="black-forest-labs/FLUX.1-Kontext-dev",
        title="FLUX.1 Kontext [dev]",
        steps=28,
        guidance=2.5,
        schedulers=("flow-euler",),
        native_side=1024,
        max_sequence_length=512,
        limits=ModelLimits(
            min_side=256,
            max_side=2048,
            max_megapixels=4.2,
            negative_prompt=False,
            max_references=1,
            **_SIDE_16,
        ),
        licence="FLUX.1 [dev] Non-Commercial License (non-commercial use only)",
        cost_factor=0.24,
    ),
)
