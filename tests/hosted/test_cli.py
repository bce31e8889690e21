"""`python -m generation --model flux-pro-1.1 ...` in a child process against the fake BFL API."""

from __future__ import annotations

import asyncio
import io
import json
import socket
import sys
from pathlib import Path

import pytest
from PIL import Image

from generation.metadata import read_record
from tests.conftest import child_environment
from tests.hosted.fake_bfl import KEY, FakeBfl, sample_png


async def cli(fake: FakeBfl | None, *argv: str, key: str = KEY) -> tuple[int, str, str]:
    env = child_environment()
    env.pop("BFL_API_KEY", None)
    if key:
        env["BFL_API_KEY"] = key
    if fake is not None:
        env["BFL_API_URL"] = fake.submit_url
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "generation",
        *argv,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await child.communicate()
    return child.returncode or 0, out.decode(), err.decode()


async def test_the_cli_makes_api_images_with_metadata(fake: FakeBfl, tmp_path: Path) -> None:
    code, out, err = await cli(
        fake, "--model", "flux-pro-1.1", "--prompt", "a red fox", "--seed", "9",
        "--count", "2", "--aspect", "3:2", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["seed"] for line in lines] == [9, 10]
    for line in lines:
        png = await asyncio.to_thread(Path(line["path"]).read_bytes)
        assert read_record(png)["request"]["model"] == "flux-pro-1.1"
        with Image.open(io.BytesIO(png)) as image:
            assert image.size == (1248, 832)  # 3:2 at about 1 MP, multiples of 32
    assert "cost: 8 credits" in err
    assert KEY not in out + err


async def test_the_cli_sends_reference_images(fake: FakeBfl, tmp_path: Path) -> None:
    ref = tmp_path / "ref.png"
    ref.write_bytes(sample_png(3, 640, 480))
    code, _, err = await cli(
        fake, "--model", "flux-kontext-pro", "--prompt", "make it night", "--ref", str(ref),
        "--out", str(tmp_path / "out"),
    )  # fmt: skip
    assert code == 0, err
    assert "input_image" in fake.submitted[0]
    assert "aspect_ratio" not in fake.submitted[0]  # follows the reference image


@pytest.mark.parametrize(
    ("script", "words"),
    [(["Request Moderated"], "moderation refused"), (["Content Moderated"], "blocked")],
)
async def test_the_cli_says_why_an_api_job_failed(
    fake: FakeBfl, tmp_path: Path, script: list[str], words: str
) -> None:
    fake.scripts = [script]
    code, out, err = await cli(
        fake, "--model", "flux-2-pro", "--prompt", "x", "--out", str(tmp_path)
    )
    assert code == 1
    assert out == ""
    assert words in err


async def test_the_cli_reports_a_refused_key(fake: FakeBfl, tmp_path: Path) -> None:
    code, _, err = await cli(
        fake, "--model", "flux-2-pro", "--prompt", "x", "--out", str(tmp_path), key="bfl_nope"
    )
    assert code == 1
    assert "key was refused" in err
    assert "bfl_nope" not in err


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--width", "1000", "--height", "1024"], "multiple of 32"),
        (["--width", "1440", "--height", "1472"], "between 256 and 1440"),
        (["--steps", "20"], "chooses its own steps"),
        (["--negative", "blur"], "negative prompt"),
        (["--raw"], "raw mode"),
    ],
)
async def test_the_cli_refuses_what_the_api_would_refuse_before_sending(
    fake: FakeBfl, tmp_path: Path, argv: list[str], words: str
) -> None:
    code, _, err = await cli(
        fake, "--model", "flux-pro-1.1", "--prompt", "x", *argv, "--out", str(tmp_path)
    )
    assert code == 2
    assert words in err
    assert fake.submitted == []


async def test_without_a_key_the_cli_says_how_to_enable_api_models(tmp_path: Path) -> None:
    code, _, err = await cli(
        None, "--model", "flux-2-max", "--prompt", "x", "--out", str(tmp_path), key=""
    )
    assert code == 2
    assert "BFL_API_KEY" in err


async def test_the_cli_fetches_a_realistic_sample_sent_in_chunks(
    fake: FakeBfl, tmp_path: Path
) -> None:
    fake.noisy = True  # ~2.3 MB of PNG in 64 KiB chunks, as a CDN sends it
    code, out, err = await cli(
        fake, "--model", "flux-pro-1.1", "--prompt", "static", "--seed", "5",
        "--width", "1024", "--height", "768", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 0, err
    png = await asyncio.to_thread(Path(json.loads(out)["path"]).read_bytes)
    with Image.open(io.BytesIO(png)) as image:
        assert image.size == (1024, 768)
        assert image.convert("RGB").tobytes() == _pixels(sample_png(5, 1024, 768, noisy=True))


async def test_the_cli_never_follows_a_redirect_with_the_key(fake: FakeBfl, tmp_path: Path) -> None:
    fake.redirect = "submit"
    code, out, err = await cli(
        fake, "--model", "flux-pro-1.1", "--prompt", "x", "--out", str(tmp_path)
    )
    assert code == 1
    assert "redirect" in err
    assert fake.stolen_keys == []
    assert KEY not in out + err


def _pixels(png: bytes) -> bytes:
    with Image.open(io.BytesIO(png)) as image:
        return image.convert("RGB").tobytes()


async def test_the_cli_writes_the_images_a_partly_moderated_job_made(
    fake: FakeBfl, tmp_path: Path
) -> None:
    fake.seed_scripts = {10: ["Content Moderated"]}
    code, out, err = await cli(
        fake, "--model", "flux-pro-1.1", "--prompt", "a red fox", "--seed", "9",
        "--count", "3", "--out", str(tmp_path),
    )  # fmt: skip
    assert code == 1
    assert [json.loads(line)["seed"] for line in out.splitlines()] == [9, 11]
    assert "Image 2 of 3 was blocked by Black Forest Labs' moderation." in err
    assert "cost: 12 credits" in err


async def test_a_base_url_ending_in_v1_is_refused_by_the_cli_and_bot_check(
    fake: FakeBfl, tmp_path: Path
) -> None:
    fake.submit_url += "/v1"
    code, _, err = await cli(
        fake, "--model", "flux-pro-1.1", "--prompt", "x", "--out", str(tmp_path)
    )
    assert code == 2
    assert "BFL_API_URL should end before /v1" in err
    assert fake.submitted == []
    config = tmp_path / "atelier.toml"
    config.write_text("")
    env = {
        **child_environment(),
        "ATELIER_CONFIG": str(config),
        "DISCORD_TOKEN": "x",
        "BFL_API_KEY": KEY,
        "BFL_API_URL": fake.submit_url,
    }
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", "check", cwd=tmp_path, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err_bytes = await child.communicate()
    assert child.returncode != 0
    assert "BFL_API_URL should end before /v1" in out.decode() + err_bytes.decode()


async def test_the_cli_says_it_is_retrying_while_the_api_does_not_answer(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {**child_environment(), "BFL_API_KEY": KEY, "BFL_API_URL": f"http://127.0.0.1:{port}"}
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "generation", "--model", "flux-pro-1.1", "--prompt", "x",
        "--out", str(tmp_path), env=env, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert child.stderr is not None
    try:
        async with asyncio.timeout(60):
            line = (await child.stderr.readline()).decode()
    finally:
        child.kill()
        await child.wait()
    assert line.startswith("image 1: retrying: no answer from the API (no connection")
    assert "trying again for 15 min" in line
