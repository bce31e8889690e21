"""PNG metadata: the A1111 `parameters` chunk that common readers (sd-parsers) understand, and
the JSON record of the full request."""

from __future__ import annotations

import hashlib
import io

from PIL import Image
from sd_parsers import ParserManager

from generation.metadata import encode_png, parameters_text, read_record
from generation.models import Catalogue
from generation.request import GenerationRequest, build_request

CATALOGUE = Catalogue.builtin()


def init_png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), "navy").save(buffer, format="PNG")
    return buffer.getvalue()


def img2img_request() -> GenerationRequest:
    return build_request(
        CATALOGUE,
        prompt="a café by the sea, étude",
        negative_prompt="blurry, text",
        width=1024,
        height=768,
        steps=30,
        guidance=4.5,
        scheduler="edm-euler",
        seeds=[11, 22],
        init_image=init_png(),
        strength=0.45,
    )


def test_parameters_text_is_in_a1111_format() -> None:
    assert parameters_text(img2img_request(), 1) == (
        "a café by the sea, étude\n"
        "Negative prompt: blurry, text\n"
        "Steps: 30, Sampler: edm-euler, CFG scale: 4.5, Seed: 22, Size: 1024x768, "
        "Model: playground-v2.5, Denoising strength: 0.45"
    )
    text2img = build_request(CATALOGUE, model="flux-dev", prompt="a fox", seed=5)
    assert parameters_text(text2img, 0) == (
        "a fox\nSteps: 28, Sampler: flow-euler, CFG scale: 3.5, Seed: 5, Size: 1024x1024, "
        "Model: flux-dev"
    )


def test_sd_parsers_reads_back_prompt_seed_steps_and_size(tmp_path) -> None:
    request = img2img_request()
    path = tmp_path / "image.png"
    path.write_bytes(encode_png(Image.new("RGB", (1024, 768), "teal"), request, 1))
    info = ParserManager().parse(path)
    assert info is not None
    assert info.generator.value == "AUTOMATIC1111"
    (sampler,) = info.samplers
    assert [prompt.value for prompt in sampler.prompts] == [request.prompt]
    assert [prompt.value for prompt in sampler.negative_prompts] == ["blurry, text"]
    assert sampler.name == "edm-euler"
    assert sampler.model.name == "playground-v2.5"
    assert sampler.parameters["seed"] == "22"
    assert sampler.parameters["steps"] == "30"
    assert sampler.parameters["cfg_scale"] == "4.5"
    assert info.metadata["Size"] == "1024x768"


def test_record_holds_the_full_request_and_the_init_image_digest() -> None:
    request = img2img_request()
    png = encode_png(Image.new("RGB", (8, 8)), request, 0)
    record = read_record(png)
    assert record["index"] == 0
    assert record["seed"] == 11
    digest = record["request"].pop("init_image_sha256")
    assert digest == hashlib.sha256(request.init_image).hexdigest()
    rebuilt = GenerationRequest.from_dict({**record["request"], "init_image": None})
    assert rebuilt == GenerationRequest.from_dict({**request.to_dict(), "init_image": None})


def test_images_from_elsewhere_have_no_record() -> None:
    assert read_record(init_png()) is None
