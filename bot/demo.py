"""`python -m bot demo` (or `scripts/start --demo`): watch Atelier work in a minute, on a laptop,
with no Discord application and no GPU.

It runs the real bot — discord.py, the studio, SQLite, the fair queue, a real worker process and
real diffusers pipelines with tiny random weights (`generation.tiny`) — against the local fake
Discord the tests use (`tests/discord`, so it runs from a source checkout). A short scripted
session plays: /imagine, its progress, the result, a 🔁 rerun and a V1 variation; each message
is printed as a person would read it. Everything lives in a temporary folder, removed at the end.
"""

from __future__ import annotations

import asyncio
import io
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

PROMPT = "a lighthouse at dusk, oil painting"
TIMEOUT_S = 180.0  # the worker imports torch and loads the tiny model first


def main(out: TextIO = sys.stdout) -> int:
    try:
        from tests.discord import FakeDiscord  # noqa: F401  (the fake lives in the checkout)
    except ImportError:
        print(
            "The demo needs the fake Discord of the source checkout (tests/discord): run it from "
            "the folder of a git clone of Atelier.",
            file=sys.stderr,
        )
        return 2
    try:
        return asyncio.run(_demo(out))
    except KeyboardInterrupt:
        print("cancelled", file=sys.stderr)
        return 130


async def _demo(out: TextIO) -> int:
    from bot.app import AtelierBot, open_services
    from bot.config import settings_from_mapping
    from generation.tiny import catalogue_config
    from tests.discord import FakeDiscord, World, run_bot

    def say(text: str) -> None:
        print(text, file=out, flush=True)

    with tempfile.TemporaryDirectory(prefix="atelier-demo-") as folder:
        root = Path(folder)
        say("Building a tiny Playground-style model (random weights, a few MB) ...")
        tiny = root / "tiny-playground"
        build = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "generation.tiny",
            str(tiny),
            "--family",
            "playground",
            stdout=asyncio.subprocess.DEVNULL,
        )
        if await build.wait() != 0:
            raise RuntimeError("generation.tiny could not build the tiny model")
        async with FakeDiscord(World.default()) as fake:
            table = {
                "data_dir": str(root / "data"),
                "guild_ids": [fake.world.guild_id],
                "models": catalogue_config({"playground": tiny}),
                "gpus": [{"device": "cpu"}],
                "progress": {"edit_interval_s": 0.2, "preview_interval_s": 0.5},
                "observability": {"enabled": False},
            }
            settings = settings_from_mapping(table, fake.child_env(), base_dir=root)
            services = await open_services(settings)
            try:
                async with run_bot(fake, lambda: AtelierBot(settings, services)):
                    say("Atelier is connected to a fake Discord on localhost.\n")
                    await _session(fake, say)
            finally:
                await services.close()
    say("\nThat was the real bot on tiny models. Next: README → Inviting the bot.")
    return 0


async def _session(fake: Any, say: Callable[[str], None]) -> None:
    alice = fake.user("alice")
    say(f'alice › /imagine prompt:"{PROMPT}" count:2 seed:42')
    ix = await fake.slash(alice, "imagine", {"prompt": PROMPT, "count": 2, "seed": 42})
    result = await _follow(fake, ix, say)
    job = result.custom_ids[0].split(":")[2]
    for custom_id, label in (
        (f"atelier:rerun:{job}", "🔁 Rerun"),
        (f"atelier:vary-subtle:{job}:0", "V1 subtle"),
    ):
        say(f"\nalice › presses {label}")
        again = await _follow(fake, await fake.click(alice, result, custom_id), say)
        same = _pixels(again) == _pixels(result)
        say(f"          (the same pixels as job {job}: {'yes' if same else 'no'})")


async def _follow(fake: Any, ix: Any, say: Callable[[str], None]) -> Any:
    """Print each new state of the interaction's reply until it shows images; that message."""
    shown: set[tuple[int, int]] = set()

    def news() -> list[Any] | None:
        fresh = [
            (message, index, version)
            for message in ix.messages
            for index, version in enumerate(message.versions)
            if (message.id, index) not in shown and not version.flags & 128  # not "thinking…"
        ]
        return fresh or None

    async with asyncio.timeout(TIMEOUT_S):
        while True:
            for message, index, version in await fake.wait_for(news, timeout=TIMEOUT_S):
                shown.add((message.id, index))
                say(_render(version))
                if version.attachments:
                    return message


def _pixels(message: Any) -> list[bytes]:
    from PIL import Image

    pixels = []
    for attachment in message.attachments:
        with Image.open(io.BytesIO(attachment.data)) as image:
            pixels.append(image.convert("RGB").tobytes())
    return pixels


def _render(version: Any) -> str:
    """A message as a person reads it: text, embeds, files and buttons, one line each."""
    lines = [version.content] if version.content else []
    for embed in version.embeds:
        lines += [embed.get(key, "") for key in ("title", "description")]
        lines += [f"{f['name']}: {f['value']}" for f in embed.get("fields", [])]
    if version.attachments:
        files = ", ".join(f"{a.filename} ({a.size // 1024 + 1} KB)" for a in version.attachments)
        lines.append(f"[images: {files}]")
    buttons = [
        c.get("label") or c.get("emoji", {}).get("name", "")
        for row in version.components
        for c in row.get("components", [])
        if c.get("type") == 2
    ]
    if buttons:
        lines.append("[buttons: " + " · ".join(b for b in buttons if b) + "]")
    text = "\n          ".join(line for line in lines if line)
    return f"Atelier › {text}"
