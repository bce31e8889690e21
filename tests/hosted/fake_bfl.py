"""A local stand-in for Black Forest Labs' API, written from its documentation (docs.bfl.ai):
the endpoint pages (fields and ranges), get_result (statuses), the error reference (400, 401,
402, 403, 422, 429, 5xx), the integration guidelines (24 active tasks per key, 6 for
flux-kontext-max; polling_url on a regional host; signed sample URLs valid 10 minutes) and the
pricing page. Three servers, like the real deployment: the submit host, a polling host on
another port (as `api.eu2.bfl.ai` beside `api.bfl.ai`) and a delivery host for samples, which
never needs the key. Its model table is its own, from the docs, not Atelier's catalogue.

Like a real server behind a CDN, samples (and padded replies) are streamed in 64 KiB chunks
with chunked transfer encoding, so a client that reads "what has arrived" gets a cut-off body.
Test modes: `redirect` (the submit/poll/credits host answers 307 towards the delivery host,
which records any `x-key` it is sent in `stolen_keys`), `noisy` samples (realistic ~2 MB PNGs),
`sample_size` (a sample of another size than asked), `reply_padding` (bytes of padding in every
get_result reply).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import io
import json
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web
from PIL import Image

KEY = "bfl_test_0123456789abcdef"
SAMPLE_LIFETIME = 600.0  # "signed URLs valid for 10 minutes"
MP = 1024 * 1024
INPUT_FORMATS = ("PNG", "JPEG", "WEBP")  # the formats BFL's reference takes for input images
# FLUX.2: "up to 8 images (9MP total limit)"; the stricter reading of MP (10**6 pixels).
FLUX2_INPUT_PIXELS = 9_000_000
MAX_SEED = 2**64 - 1  # `seed` is an unsigned 64-bit integer (BFL's reference: integer, >= 0)
CHUNK = 2**16

# name: (kind, price) — kind "pixels": (min, max, multiple, max pixels); "aspect": nominal px.
_PIXEL_1 = ("pixels", (256, 1440, 32, 1440 * 1440))
_PIXEL_2 = ("pixels", (64, 1 << 30, 16, 4 * MP))
_UPSAMPLING = {"prompt_upsampling"}
MODELS: dict[str, dict[str, Any]] = {
    "flux-pro-1.1": {"size": _PIXEL_1, "price": 4, "inputs": 0, "extra": {"prompt_upsampling"}},
    "flux-pro-1.1-ultra": {
        "size": ("aspect", 4 * MP),
        "price": 6,
        "inputs": 0,
        "extra": {"prompt_upsampling", "raw"},
    },
    "flux-kontext-pro": {"size": ("aspect", MP), "price": 4, "inputs": 4, "extra": _UPSAMPLING},
    "flux-kontext-max": {
        "size": ("aspect", MP), "price": 8, "inputs": 4, "extra": _UPSAMPLING, "active": 6
    },
    "flux-2-pro": {"size": _PIXEL_2, "price": (3, 1.5), "inputs": 8, "extra": set(),
                   "tolerance": 5, "input_pixels": FLUX2_INPUT_PIXELS},
    "flux-2-max": {"size": _PIXEL_2, "price": (7, 3), "inputs": 8, "extra": set(),
                   "tolerance": 5, "input_pixels": FLUX2_INPUT_PIXELS},
    "flux-2-flex": {
        "size": _PIXEL_2,
        "price": (5, 5),
        "inputs": 8,
        "extra": {"prompt_upsampling", "steps", "guidance"},
        "tolerance": 5,
        "input_pixels": FLUX2_INPUT_PIXELS,
    },
}  # fmt: skip
COMMON = {"prompt", "seed", "output_format", "safety_tolerance", "webhook_url", "webhook_secret"}


@dataclass
class Task:
    id: str
    key: str
    model: str
    width: int
    height: int
    seed: int
    script: list[str]
    step: int = 0
    ready_at: float | None = None
    finished: bool = False


@dataclass
class FakeBfl:
    """Set `now` (the clock samples expire by), `credits` (402 at 0), push status scripts onto
    `scripts` (one list per next task, e.g. ["Pending:0.5", "Ready"]) or set them per seed in
    `seed_scripts` (a job's tasks are sent together, in no fixed order), push HTTP faults onto
    `faults[kind]` (kind "submit" / "poll" / "download"), point `polling_host` elsewhere."""

    now: float = 1_000.0
    credits: float = 1_000.0
    scripts: list[list[str]] = field(default_factory=list)
    seed_scripts: dict[int, list[str]] = field(default_factory=dict)  # by the task's seed first
    faults: dict[str, list[int]] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    submitted: list[dict[str, Any]] = field(default_factory=list)
    polling_host: str | None = None
    redirect: str | None = None  # "submit", "poll" or "credits": answer 307 to the delivery host
    stolen_keys: list[str] = field(default_factory=list)
    noisy: bool = False
    sample_size: tuple[int, int] | None = None
    reply_padding: int = 0
    costless: bool = False  # submit replies without `cost` (an older or changed API)
    submit_url: str = ""
    poll_url: str = ""
    delivery_url: str = ""
    _runners: list[web.AppRunner] = field(default_factory=list)

    async def start(self) -> None:
        submit, poll, delivery = web.Application(), web.Application(), web.Application()
        submit.router.add_post("/v1/{model}", self._submit)
        submit.router.add_get("/v1/credits", self._credits)
        poll.router.add_get("/v1/get_result", self._get_result)
        delivery.router.add_get("/sample/{token}", self._sample)
        delivery.router.add_route("*", "/elsewhere/{tail:.*}", self._elsewhere)
        urls = []
        for app in (submit, poll, delivery):
            runner = web.AppRunner(app)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            self._runners.append(runner)
            port = runner.addresses[0][1]
            urls.append(f"http://127.0.0.1:{port}")
        self.submit_url, self.poll_url, self.delivery_url = urls

    async def close(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    def active(self, key: str, model: str | None = None) -> int:
        return sum(
            1
            for t in self.tasks.values()
            if t.key == key and not t.finished and (model is None or t.model == model)
        )

    # ---- handlers -------------------------------------------------------------------------------

    def _auth(self, request: web.Request) -> web.Response | None:
        key = request.headers.get("x-key")
        if key is None:
            return web.json_response({"detail": "Not authenticated"}, status=401)
        if key != KEY:
            return web.json_response({"detail": "Invalid API key"}, status=403)
        return None

    def _fault(self, kind: str, request: web.Request) -> web.Response | None:
        if self.redirect == kind:
            raise web.HTTPTemporaryRedirect(f"{self.delivery_url}/elsewhere{request.path_qs}")
        queue = self.faults.get(kind)
        if queue:
            status = queue.pop(0)
            return web.json_response({"detail": f"injected {status}"}, status=status)
        return None

    async def _credits(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        return self._fault("credits", request) or web.json_response({"credits": self.credits})

    async def _elsewhere(self, request: web.Request) -> web.Response:
        """Another host a redirect points to: whatever key reaches it is stolen."""
        if "x-key" in request.headers:
            self.stolen_keys.append(request.headers["x-key"])
        return web.json_response({"id": "x", "status": "Pending", "polling_url": "x"})

    async def _submit(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        if fault := self._fault("submit", request):
            return fault
        model = request.match_info["model"]
        spec = MODELS.get(model)
        if spec is None:
            return web.json_response({"detail": "Not Found"}, status=404)
        try:
            body = await request.json()
        except ValueError:
            return web.json_response({"detail": "There was an error parsing the body"}, status=400)
        problems, size, inputs = _validate(spec, body)
        if problems:
            return web.json_response({"detail": problems}, status=422)
        key = request.headers["x-key"]
        if self.active(key) >= 24 or self.active(key, model) >= spec.get("active", 24):
            return web.json_response(
                {"detail": "Too many active tasks. Please wait for some to complete."}, status=429
            )
        cost, input_mp, output_mp = _price(spec, size, inputs)
        if self.credits < cost:
            return web.json_response({"detail": "Insufficient credits"}, status=402)
        self.credits -= cost
        self.submitted.append(body)
        task = Task(
            id=secrets.token_hex(8),
            key=key,
            model=model,
            width=size[0],
            height=size[1],
            seed=int(body.get("seed") or 0),
            script=self.seed_scripts.pop(int(body.get("seed") or 0), None)
            or (self.scripts.pop(0) if self.scripts else ["Pending:0.3", "Ready"]),
        )
        self.tasks[task.id] = task
        host = self.polling_host or self.poll_url
        return web.json_response(
            {
                "id": task.id,
                "polling_url": f"{host}/v1/get_result?id={task.id}",
                **({} if self.costless else {"cost": cost}),
                "input_mp": input_mp,
                "output_mp": output_mp,
            }
        )

    async def _get_result(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        if fault := self._fault("poll", request):
            return fault
        task = self.tasks.get(request.query.get("id", ""))
        if task is None:
            return web.json_response({"id": request.query.get("id"), "status": "Task not found"})
        status, _, progress = task.script[min(task.step, len(task.script) - 1)].partition(":")
        task.step += 1
        reply: dict[str, Any] = {"id": task.id, "status": status, "result": None}
        if self.reply_padding:
            reply["padding"] = "x" * self.reply_padding
        if status == "Pending":
            reply["progress"] = float(progress) if progress else None
            return await _streamed(request, json.dumps(reply).encode(), "application/json")
        task.finished = True
        if status == "Ready":
            task.ready_at = task.ready_at or self.now
            reply["result"] = {
                "sample": f"{self.delivery_url}/sample/{task.id}",
                "seed": task.seed,
                "prompt": "",
            }
        return await _streamed(request, json.dumps(reply).encode(), "application/json")

    async def _sample(self, request: web.Request) -> web.Response:
        if "x-key" in request.headers:  # a signed URL: the key must never travel there
            return web.Response(status=400, text="unexpected credentials")
        if fault := self._fault("download", request):
            return fault
        task = self.tasks.get(request.match_info["token"])
        if task is None or task.ready_at is None or self.now > task.ready_at + SAMPLE_LIFETIME:
            return web.Response(status=403, text="Request has expired")
        width, height = self.sample_size or (task.width, task.height)
        png = sample_png(task.seed, width, height, noisy=self.noisy)
        return await _streamed(request, png, "image/png")


async def _streamed(request: web.Request, body: bytes, content_type: str) -> web.StreamResponse:
    """`body` in `CHUNK`-byte chunks, chunked transfer encoding, yielding between chunks."""
    response = web.StreamResponse(headers={"Content-Type": content_type})
    response.enable_chunked_encoding()
    await response.prepare(request)
    for start in range(0, len(body), CHUNK):
        await response.write(body[start : start + CHUNK])
        await asyncio.sleep(0)
    await response.write_eof()
    return response


def sample_png(seed: int, width: int, height: int, *, noisy: bool = False) -> bytes:
    """Deterministic per seed: a flat colour drawn from it (fast to encode at 4 MP), or with
    `noisy` random pixels from it (as large as a real sample: ~2.3 MB at 1024x768)."""
    if noisy:
        pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
    else:
        colour = (seed % 251, (seed // 251) % 241, (seed // 60_000) % 239)
        image = Image.new("RGB", (width, height), colour)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _problem(field_name: str, msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": ["body", field_name], "msg": msg, "type": kind}


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _validate(
    spec: dict[str, Any], body: Any
) -> tuple[list[dict[str, Any]], tuple[int, int], list[tuple[int, int]]]:
    problems: list[dict[str, Any]] = []
    if not isinstance(body, dict):
        return [_problem("body", "Input should be an object", "dict_type")], (0, 0), []
    kind, limits = spec["size"]
    allowed = COMMON | spec["extra"]
    allowed |= {"width", "height"} if kind == "pixels" else {"aspect_ratio"}
    names = ["input_image"] + [f"input_image_{n}" for n in range(2, spec["inputs"] + 1)]
    allowed |= set(names[: spec["inputs"]])
    problems += [
        _problem(name, "Extra inputs are not permitted", "extra_forbidden")
        for name in body
        if name not in allowed
    ]
    if not isinstance(body.get("prompt"), str) or not body["prompt"]:
        problems.append(_problem("prompt", "Field required", "missing"))
    seed = body.get("seed")
    if seed is not None and not (_integer(seed) and 0 <= seed <= MAX_SEED):
        problems.append(_problem("seed", f"Input should be an integer 0-{MAX_SEED}", "int_type"))
    for flag in ("raw", "prompt_upsampling"):
        if flag in body and not isinstance(body[flag], bool):
            problems.append(_problem(flag, "Input should be a valid boolean", "bool_type"))
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        problems.append(_problem("output_format", "Input should be 'jpeg' or 'png'", "enum"))
    tolerance = body.get("safety_tolerance", 2)
    if not _integer(tolerance) or not 0 <= tolerance <= spec.get("tolerance", 6):
        problems.append(_problem("safety_tolerance", "out of range"))
    steps = body.get("steps", 50)
    if "steps" in spec["extra"] and not (_integer(steps) and 1 <= steps <= 50):
        problems.append(_problem("steps", "Input should be an integer between 1 and 50"))
    guidance = body.get("guidance", 5)
    number = _integer(guidance) or isinstance(guidance, float)
    if "guidance" in spec["extra"] and not (number and 1.5 <= guidance <= 10):
        problems.append(_problem("guidance", "Input should be a number between 1.5 and 10"))
    inputs = []
    for name in names:
        if body.get(name) is not None:
            try:
                with Image.open(io.BytesIO(base64.b64decode(body[name], validate=True))) as image:
                    if image.format not in INPUT_FORMATS:
                        raise ValueError(image.format)
                    inputs.append(image.size)
            except (binascii.Error, OSError, ValueError, TypeError):
                problems.append(_problem(name, "not a base64 PNG, JPEG or WebP image"))
    if sum(w * h for w, h in inputs) > spec.get("input_pixels", math.inf):
        problems.append(_problem("input_image", "input images exceed 9MP in total"))
    if kind == "pixels":
        least, most, multiple, max_pixels = limits
        default = (1024, 768) if least == 256 else (inputs[0] if inputs else (1024, 1024))
        width, height = body.get("width", default[0]), body.get("height", default[1])
        for name, side in (("width", width), ("height", height)):
            if not isinstance(side, int) or not least <= side <= most or side % multiple:
                problems.append(
                    _problem(name, f"must be {least}-{most} and a multiple of {multiple}")
                )
        if not problems and width * height > max_pixels:
            problems.append(_problem("width", "image larger than allowed"))
        size = (width, height) if not problems else (0, 0)
    else:
        ratio = body.get("aspect_ratio")
        if ratio is None:
            w, h = inputs[0] if inputs else ((16, 9) if limits == 4 * MP else (1, 1))
        else:
            try:
                w, h = (int(part) for part in str(ratio).split(":"))
            except ValueError:
                w = h = 0
            if not (w > 0 and h > 0 and 9 / 21 <= w / h <= 21 / 9):
                problems.append(_problem("aspect_ratio", "must be between 21:9 and 9:21"))
                w = h = 1
        width = round(math.sqrt(limits * w / h) / 32) * 32
        size = (width, round(width * h / w / 32) * 32)
    return problems, size, inputs


def _price(
    spec: dict[str, Any], size: tuple[int, int], inputs: list[tuple[int, int]]
) -> tuple[float, float, float]:
    output_mp = size[0] * size[1] / MP
    input_mp = sum(w * h for w, h in inputs) / MP
    price = spec["price"]
    if not isinstance(price, tuple):
        return float(price), input_mp, output_mp
    first, further = price
    started = (
        max(1, math.ceil(output_mp - 1e-9))
        - 1
        + sum(max(1, math.ceil(w * h / MP - 1e-9)) for w, h in inputs)
    )
    return first + further * started, input_mp, output_mp
