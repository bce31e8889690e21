"""FLUX.2 [klein] and FLUX.1 Kontext with reference images, through the real tiny pipelines:
the model's limit, bit-exact reruns, and the CLI against a plain diffusers call."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from generation.engine import Engine
from generation.models import Catalogue
from generation.request import GenerationRequest, RequestError, build_request
from tests.conftest import child_environment
from tests.generation.helpers import pixels


def _png(size: tuple[int, int], colour: tuple[int, int, int]) -> bytes:
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    image = Image.blend(image, Image.new("RGB", size, colour), 0.5)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


RED, BLUE = _png((96, 64), (220, 30, 30)), _png((64, 80), (30, 30, 220))


@pytest.fixture(scope="module")
def engine(tiny_catalogue: Catalogue) -> Engine:
    return Engine(tiny_catalogue, device="cpu")


@pytest.mark.parametrize(
    ("model", "references"), [("flux2-klein-4b", (RED, BLUE)), ("flux-kontext-dev", (RED,))]
)
def test_each_image_of_a_batch_with_references_reruns_bit_exact(
    engine: Engine, tiny_catalogue: Catalogue, model: str, references: tuple[bytes, ...]
) -> None:
    request = build_request(
        tiny_catalogue, prompt="the fox", model=model, seed=11, count=2, input_images=references
    )
    batch = engine.generate(request)
    stored = GenerationRequest.from_json(request.to_json())  # what the record keeps
    (alone,) = engine.generate(stored.with_seeds((12,)))
    assert np.array_equal(pixels(batch[1].png), pixels(alone.png))
    without = engine.generate(replace(request, seeds=(11,), input_images=()))
    assert not np.array_equal(pixels(batch[0].png), pixels(without[0].png))  # references matter


def test_a_reference_beyond_the_models_limit_is_refused(tiny_catalogue: Catalogue) -> None:
    with pytest.raises(RequestError, match="at most 4 reference images"):
        build_request(tiny_catalogue, prompt="x", model="flux2-klein-4b", input_images=[RED] * 5)
    with pytest.raises(RequestError, match="at most 1 reference images"):
        build_request(
            tiny_catalogue, prompt="x", model="flux-kontext-dev", input_images=[RED, BLUE]
        )
    with pytest.raises(RequestError, match="flux-dev takes no reference images"):
        build_request(tiny_catalogue, prompt="x", model="flux-dev", input_images=[RED])


def test_an_init_image_or_a_tiny_reference_is_refused_with_a_reason(
    tiny_catalogue: Catalogue,
) -> None:
    with pytest.raises(RequestError, match=r"no init image.*as a reference"):
        build_request(tiny_catalogue, prompt="x", model="flux2-klein-4b", init_image=RED)
    with pytest.raises(RequestError, match="at least 64 pixels"):
        build_request(
            tiny_catalogue,
            prompt="x",
            model="flux2-klein-4b",
            input_images=[_png((80, 40), (0, 0, 0))],
        )


def test_cli_runs_a_klein_folder_saved_by_plain_diffusers_as_diffusers_does(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    import torch
    from diffusers import (
        AutoencoderKLFlux2,
        FlowMatchEulerDiscreteScheduler,
        Flux2KleinPipeline,
        Flux2Transformer2DModel,
    )
    from transformers import Qwen2TokenizerFast, Qwen3Config, Qwen3ForCausalLM

    torch.manual_seed(0)
    tokenizer = Qwen2TokenizerFast.from_pretrained(tiny_model_dirs["flux2-klein"] / "tokenizer")
    pipe = Flux2KleinPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True),
        vae=AutoencoderKLFlux2(
            block_out_channels=(8, 16, 16, 16),
            latent_channels=8,
            layers_per_block=1,
            norm_num_groups=8,
            use_quant_conv=False,
            use_post_quant_conv=False,
        ),
        text_encoder=Qwen3ForCausalLM(
            Qwen3Config(
                vocab_size=len(tokenizer),
                hidden_size=8,
                intermediate_size=16,
                num_hidden_layers=28,
                num_attention_heads=2,
                num_key_value_heads=1,
                head_dim=4,
            )
        ),
        tokenizer=tokenizer,
        transformer=Flux2Transformer2DModel(
            in_channels=32,
            num_layers=1,
            num_single_layers=2,
            attention_head_dim=8,
            num_attention_heads=2,
            joint_attention_dim=24,
            axes_dims_rope=(2, 2, 2, 2),
        ),
        is_distilled=True,
    )
    folder = tmp_path / "my-klein"
    pipe.save_pretrained(folder)
    refs = [tmp_path / "red.png", tmp_path / "blue.png"]
    for path, data in zip(refs, (RED, BLUE), strict=True):
        path.write_bytes(data)
    (tmp_path / "atelier.toml").write_text(
        '[models.my-klein]\nfamily = "flux2-klein"\n'
        f'source = "{folder}"\nmin_side = 32\nnative_side = 64\nmax_sequence_length = 32\n'
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "generation",
            "--model",
            "my-klein",
            "--config",
            str(tmp_path / "atelier.toml"),
            "--prompt",
            "a fox",
            "--seed",
            "5",
            "--steps",
            "3",
            "--width",
            "64",
            "--height",
            "48",
            "--ref",
            str(refs[0]),
            "--ref",
            str(refs[1]),
            "--device",
            "cpu",
            "--out",
            str(tmp_path / "out"),
        ],
        env=child_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    made = json.loads(out.stdout.splitlines()[-1])
    expected = pipe(
        prompt="a fox",
        image=[Image.open(path).convert("RGB") for path in refs],
        width=64,
        height=48,
        num_inference_steps=3,
        guidance_scale=1.0,
        max_sequence_length=32,
        generator=torch.Generator("cpu").manual_seed(5),
    ).images[0]
    assert np.array_equal(pixels(Path(made["path"]).read_bytes()), np.asarray(expected))
