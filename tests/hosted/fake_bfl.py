"""A local stand-in for Black Forest Labs' API, written from its documentation (docs.bfl.ai):
the endpoint pages (fields and ranges), get_result (statuses), the error reference (400, 401,
402, 403, 422, 429, 5xx), the integration guidelines (24 active tasks per key, 6 for
flux-kontext-max; polling_url on a regional host; signed sample URLs valid 10 minutes) and the
pricing page. Three servers, like the real deployment: the submit host, a polling host on
another port (as `api.eu2.bfl.ai` beside `api.bfl.ai`) and a delivery host for samples, which
never needs the key. Its model table is its own, from the docs, not Atelier's catalogue.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import secrets
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from PIL import Image

KEY = "bfl_test_0123456789abcdef"
SAMPLE_LIFETIME = 600.0  # "signed URLs valid for 10 minutes"
MP = 1024 * 1024

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
                   "tolerance": 5},
    "flux-2-max": {"size": _PIXEL_2, "price": (7, 3), "inputs": 8, "extra": set(),
                   "tolerance": 5},
    "flux-2-flex": {
        "size": _PIXEL_2,
        "price": (5, 5),
        "inputs": 8,
        "extra": {"prompt_upsampling", "steps", "guidance"},
        "tolerance": 5,
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
    `scripts` (one list per next task, e.g. ["Pending:0.5", "Ready"]), push HTTP faults onto
    `faults[kind]` (kind "submit" / "poll" / "download"), point `polling_host` elsewhere."""

    now: float = 1_000.0
    credits: float = 1_000.0
    scripts: list[list[str]] = field(default_factory=list)
    faults: dict[str, list[int]] = field(default_factory=dict)
    tasks: dict[str, Task] = field(default_factory=dict)
    submitted: list[dict[str, Any]] = field(default_factory=list)
    polling_host: str | None = None
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

    def _fault(self, kind: str) -> web.Response | None:
        queue = self.faults.get(kind)
        if queue:
            status = queue.pop(0)
            return web.json_response({"detail": f"injected {status}"}, status=status)
        return None

    async def _credits(self, request: web.Request) -> web.Response:
        return self._auth(request) or web.json_response({"credits": self.credits})

    async def _submit(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        if fault := self._fault("submit"):
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
            script=self.scripts.pop(0) if self.scripts else ["Pending:0.3", "Ready"],
        )
        self.tasks[task.id] = task
        host = self.polling_host or self.poll_url
        return web.json_response(
            {
                "id": task.id,
                "polling_url": f"{host}/v1/get_result?id={task.id}",
                "cost": cost,
                "input_mp": input_mp,
                "output_mp": output_mp,
            }
        )

    async def _get_result(self, request: web.Request) -> web.Response:
        if denied := self._auth(request):
            return denied
        if fault := self._fault("poll"):
            return fault
        task = self.tasks.get(request.query.get("id", ""))
        if task is None:
            return web.json_response({"id": request.query.get("id"), "status": "Task not found"})
        status, _, progress = task.script[min(task.step, len(task.script) - 1)].partition(":")
        task.step += 1
        reply: dict[str, Any] = {"id": task.id, "status": status, "result": None}
        if status == "Pending":
            reply["progress"] = float(progress) if progress else None
            return web.json_response(reply)
        task.finished = True
        if status == "Ready":
            task.ready_at = task.ready_at or self.now
            reply["result"] = {
                "sample": f"{self.delivery_url}/sample/{task.id}",
                "seed": task.seed,
                "prompt": "",
            }
        return web.json_response(reply)

    async def _sample(self, request: web.Request) -> web.Response:
        if "x-key" in request.headers:  # a signed URL: the key must never travel there
            return web.Response(status=400, text="unexpected credentials")
        if fault := self._fault("download"):
            return fault
        task = self.tasks.get(request.match_info["token"])
        if task is None or task.ready_at is None or self.now > task.ready_at + SAMPLE_LIFETIME:
            return web.Response(status=403, text="Request has expired")
        return web.Response(body=sample_png(task.seed, task.width, task.height))


def sample_png(seed: int, width: int, height: int) -> bytes:
    """Deterministic per seed: a flat colour drawn from it (fast to encode at 4 MP)."""
    colour = (seed % 251, (seed // 251) % 241, (seed // 60_000) % 239)
    buffer = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _problem(field_name: str, msg: str, kind: str = "value_error") -> dict[str, Any]:
    return {"loc": ["body", field_name], "msg": msg, "type": kind}


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
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        problems.append(_problem("seed", "Input should be a valid integer", "int_type"))
    if body.get("output_format", "jpeg") not in ("jpeg", "png"):
        problems.append(_problem("output_format", "Input should be 'jpeg' or 'png'", "enum"))
    tolerance = body.get("safety_tolerance", 2)
    if not isinstance(tolerance, int) or not 0 <= tolerance <= spec.get("tolerance", 6):
        problems.append(_problem("safety_tolerance", "out of range"))
    if "steps" in spec["extra"] and not (1 <= body.get("steps", 50) <= 50):
        problems.append(_problem("steps", "Input should be between 1 and 50"))
    if "guidance" in spec["extra"] and not (1.5 <= body.get("guidance", 5) <= 10):
        problems.append(_problem("guidance", "Input should be between 1.5 and 10"))
    inputs = []
    for name in names:
        if body.get(name) is not None:
            try:
                with Image.open(io.BytesIO(base64.b64decode(body[name], validate=True))) as image:
                    inputs.append(image.size)
            except (binascii.Error, OSError, ValueError):
                problems.append(_problem(name, "not a base64 image"))
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
