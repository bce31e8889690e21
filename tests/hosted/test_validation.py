"""API requests are validated once, in `build_request`: whatever it accepts, the (documented)
API accepts too and prices as Atelier estimated; whatever the API would refuse, it refuses first
with a sentence."""

from __future__ import annotations

import itertools

import aiohttp
import pytest

from generation.hosted.catalogue import HOSTED_MODELS, hosted_models
from generation.hosted.client import ApiError, BflClient
from generation.hosted.payload import request_body
from generation.models import Catalogue
from generation.request import GenerationRequest, RequestError, build_request
from tests.hosted.conftest import settings
from tests.hosted.fake_bfl import FakeBfl, sample_png

SIDES = (63, 64, 240, 256, 1000, 1024, 1440, 1456, 2048, 2064, 4096)
ASPECTS = ("1:1", "16:9", "21:9", "9:21", "22:9", "4:1", "3:2")
REF = sample_png(1, 1024, 1024)
BIG = sample_png(2, 2048, 2048)  # 4.2 million pixels: two fit FLUX.2's 9 MP, three do not


def _attempts(model: str) -> list[dict]:
    tries: list[dict] = [{}]
    tries += [{"width": w, "height": h} for w, h in itertools.product(SIDES, repeat=2)]
    tries += [{"aspect": aspect} for aspect in ASPECTS]
    tries += [{"steps": s} for s in (0, 1, 50, 51)] + [{"guidance": g} for g in (1.4, 1.5, 10, 11)]
    tries += [{"raw": True}, {"input_images": [REF] * 4}, {"input_images": [REF] * 5}]
    tries += [{"input_images": [REF] * 8}, {"input_images": [REF] * 9}]
    tries += [{"input_images": [BIG] * 2}, {"input_images": [BIG] * 3}]
    return tries


@pytest.mark.parametrize("model", [m.name for m in HOSTED_MODELS])
async def test_what_atelier_accepts_the_api_accepts_at_the_estimated_price(
    fake: FakeBfl, catalogue: Catalogue, model: str
) -> None:
    accepted, refusals = 0, list[str]()
    async with aiohttp.ClientSession() as session:
        client = BflClient(settings(fake), session)
        for fields in _attempts(model):
            try:
                request = build_request(catalogue, model=model, prompt="a cat", seed=1, **fields)
            except RequestError as error:
                refusals.append(error.message)
                continue
            body = request_body(catalogue.hosted[model], request, 0)
            try:
                reply = await client.submit(model, body)
            except ApiError as error:
                pytest.fail(f"{fields}: the API refused what Atelier accepted: {error}")
            for task in fake.tasks.values():
                task.finished = True
            assert reply.cost == catalogue.hosted[model].estimate(request), fields
            accepted += 1
    assert accepted >= 2
    assert all(message.endswith((".", ")")) for message in refusals)


@pytest.mark.parametrize(
    ("model", "fields", "words"),
    [
        ("flux-pro-1.1", {"width": 1000, "height": 1024}, "multiple of 32"),
        ("flux-pro-1.1", {"width": 1472, "height": 1024}, "between 256 and 1440"),
        ("flux-2-pro", {"width": 1000, "height": 1024}, "multiple of 16"),
        ("flux-2-pro", {"width": 2064, "height": 2048}, "at most 4,194,304"),
        ("flux-pro-1.1-ultra", {"width": 1024, "height": 1024}, "aspect ratio"),
        ("flux-pro-1.1-ultra", {"aspect": "3:1"}, "from 21:9 to 9:21"),
        ("flux-2-pro", {"raw": True}, "no raw mode"),
        ("flux-2-flex", {"steps": 51}, "between 1 and 50"),
        ("flux-2-flex", {"guidance": 1.4}, "between 1.5 and 10"),
        ("flux-2-max", {"guidance": 3}, "does not take a guidance"),
        ("flux-kontext-pro", {"input_images": [REF] * 5}, "at most 4 reference"),
        ("flux-2-pro", {"input_images": [REF] * 9}, "at most 8 reference"),
        ("flux-pro-1.1", {"input_images": [REF]}, "no reference images"),
        ("flux-2-pro", {"input_images": [b"GIF89a..."]}, "Reference image 1"),
        ("flux-2-pro", {"init_image": REF}, "reference images instead"),
        ("flux-2-pro", {"negative_prompt": "blur"}, "negative prompt"),
        ("flux-2-pro", {"scheduler": "edm-euler"}, "no scheduler"),
        ("playground-v2.5", {"input_images": [REF]}, "no reference images"),
        ("flux-dev", {"raw": True}, "no raw mode"),
    ],
)
def test_refusals_are_sentences_naming_the_limit(
    catalogue: Catalogue, model: str, fields: dict, words: str
) -> None:
    with pytest.raises(RequestError) as refused:
        build_request(catalogue, model=model, prompt="a cat", **fields)
    assert words in refused.value.message


def test_api_models_are_offered_only_with_a_key() -> None:
    assert hosted_models({}) == ()
    assert hosted_models({"BFL_API_KEY": "  "}) == ()
    assert {m.name for m in hosted_models({"BFL_API_KEY": "bfl_x"})} == {
        "flux-pro-1.1", "flux-pro-1.1-ultra", "flux-kontext-pro", "flux-kontext-max",
        "flux-2-pro", "flux-2-flex", "flux-2-max",
    }  # fmt: skip
    with pytest.raises(RequestError, match="Unknown model"):
        build_request(Catalogue.builtin(), model="flux-2-pro", prompt="x")


def test_api_requests_round_trip_and_local_records_are_unchanged(catalogue: Catalogue) -> None:
    api = build_request(
        catalogue, model="flux-pro-1.1-ultra", prompt="x", aspect="21:9", raw=True, seed=3
    )
    assert GenerationRequest.from_json(api.to_json()) == api
    refs = build_request(catalogue, model="flux-2-pro", prompt="x", input_images=[REF], seed=3)
    assert GenerationRequest.from_json(refs.to_json()) == refs
    local = build_request(catalogue, model="flux-dev", prompt="x", seed=3)
    assert not {"aspect_ratio", "raw", "input_images"} & set(local.to_dict())


async def test_a_422_detail_list_reaches_the_log_in_one_line(fake: FakeBfl) -> None:
    async with aiohttp.ClientSession() as session:
        client = BflClient(settings(fake), session)
        with pytest.raises(ApiError) as refused:
            await client.submit("flux-pro-1.1", {"prompt": "x", "width": 1000, "colour": "red"})
    assert refused.value.status == 422
    assert "body.colour: Extra inputs are not permitted" in refused.value.detail
    assert "body.width: must be 256-1440 and a multiple of 32" in refused.value.detail
    assert fake.tasks == {}


@pytest.mark.parametrize("model", ["flux-2-pro", "flux-2-flex", "flux-2-max"])
async def test_flux2_references_over_9_mp_in_all_are_refused_here_and_by_the_api(
    fake: FakeBfl, catalogue: Catalogue, model: str
) -> None:
    with pytest.raises(RequestError, match="million pixels in all") as refused:
        build_request(catalogue, model=model, prompt="x", seed=1, input_images=[BIG] * 8)
    assert "at most 9 million" in str(refused.value)
    two = build_request(catalogue, model=model, prompt="x", seed=1, input_images=[BIG] * 2)
    body = request_body(catalogue.hosted[model], two, 0)
    body["input_image_3"] = body["input_image"]
    async with aiohttp.ClientSession() as session:
        with pytest.raises(ApiError) as api_refused:
            await BflClient(settings(fake), session).submit(model, body)
    assert "exceed 9MP" in api_refused.value.detail
