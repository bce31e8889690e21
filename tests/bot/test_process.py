"""`python -m bot` as the owner runs it: first run, bad token, `check`, and a SIGKILL with jobs
queued and running, after which every job still completes and is delivered, and no progress
message is left stale."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.config import EXAMPLE_CONFIG, ConfigError, load_settings
from storage import Database
from tests.bot.helpers import bot_config, job_id_of
from tests.conftest import REPO, child_environment
from tests.discord import BotProcess, FakeDiscord


def to_toml(table: Mapping[str, Any], prefix: str = "") -> str:
    """Enough TOML for the bot's configuration (values are JSON-compatible scalars and lists)."""
    lines, tables = [], []
    for key, value in table.items():
        name = f'"{key}"' if "." in key else key
        if isinstance(value, Mapping):
            tables.append((f"{prefix}{name}", value))
        elif isinstance(value, list) and value and isinstance(value[0], Mapping):
            tables.extend((f"[{prefix}{name}]", item) for item in value)
        else:
            lines.append(f"{name} = {json.dumps(value)}")
    for header, body in tables:
        if header.startswith("["):
            lines.append(f"\n[{header}]\n{to_toml(body)}")
        else:
            lines.append(f"\n[{header}]\n{to_toml(body, header + '.')}")
    return "\n".join(lines)


def run_bot_command(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `python -m bot ARGS` with no token unless `env` gives one."""
    environment = {k: v for k, v in child_environment().items() if k != "DISCORD_TOKEN"}
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "bot", *args],
        cwd=cwd,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_first_run_writes_the_example_and_says_to_set_the_token(tmp_path: Path) -> None:
    env = {"ATELIER_CONFIG": str(tmp_path / "conf" / "atelier.toml"), "DISCORD_TOKEN": ""}

    done = run_bot_command(cwd=tmp_path, env=env)

    assert done.returncode == 2
    written = tmp_path / "conf" / "atelier.toml"
    assert written.read_text() == EXAMPLE_CONFIG.read_text()
    assert "wrote an example to" in done.stderr
    assert "Set DISCORD_TOKEN in the environment" in done.stderr
    assert "Traceback" not in done.stderr

    again = run_bot_command(cwd=tmp_path, env=env)  # the example is valid; the token is missing
    assert again.returncode == 1
    assert again.stderr.startswith("No token.")


def test_a_bad_configuration_lists_every_problem(tmp_path: Path) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text('data_dir = 3\n[limits]\nmax_queued = 0\n[defaults]\nmodel = "dall-e"\n')

    done = run_bot_command(cwd=tmp_path, env={"ATELIER_CONFIG": str(config)})

    assert done.returncode == 1
    assert "`data_dir` should be text" in done.stderr
    assert "`limits.max_queued`" in done.stderr
    assert '`defaults.model` "dall-e"' in done.stderr
    assert "Traceback" not in done.stderr


def _unreadable(kind: str, tmp_path: Path) -> tuple[Path, str]:
    """A configuration path that cannot be read, and the sentence that says why."""
    path = tmp_path / "atelier.toml"
    if kind == "folder":
        path.mkdir()
        return path, f"{path} is a folder, not a configuration file."
    if kind == "not utf-8":
        path.write_bytes(b'data_dir = "\xff"\n')
        return path, f"{path} is not UTF-8 text (byte 12); save it as UTF-8."
    path.symlink_to(tmp_path / "gone" / "atelier.toml")
    return path, f"{path} links to {tmp_path / 'gone' / 'atelier.toml'}, which does not exist."


@pytest.mark.parametrize("command", [[], ["check"]])
@pytest.mark.parametrize("kind", ["folder", "not utf-8", "dangling link"])
def test_a_configuration_that_cannot_be_read_is_one_sentence(
    tmp_path: Path, kind: str, command: list[str]
) -> None:
    path, sentence = _unreadable(kind, tmp_path)

    done = run_bot_command(*command, "--config", str(path), cwd=tmp_path)

    assert done.returncode == 1
    said = done.stdout if command else done.stderr  # check: one stream, in order
    assert sentence in said
    assert "Traceback" not in done.stdout + done.stderr
    assert not (tmp_path / "gone").exists()


def test_an_unreadable_configuration_is_one_sentence(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "atelier.toml"
    path.write_text("")

    def refused(*args: object, **kwargs: object) -> str:  # root reads any file: fake the refusal
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(Path, "read_text", refused)
    with pytest.raises(ConfigError) as caught:
        load_settings(path, {})
    assert caught.value.problems == [f"{path} cannot be read: Permission denied."]


def test_a_first_run_where_the_example_cannot_be_written_is_one_sentence(tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("")
    path = tmp_path / "afile" / "atelier.toml"  # below a file: no folder can be made there

    done = run_bot_command(cwd=tmp_path, env={"ATELIER_CONFIG": str(path)})

    assert done.returncode == 1
    assert f"There is no configuration at {path}, and I could not write an example" in (done.stderr)
    assert "Traceback" not in done.stderr


def test_commands_printed_after_config_repeat_it_and_a_set_token_is_not_asked_for(
    tmp_path: Path,
) -> None:
    path = tmp_path / "my config.toml"
    given = f"--config '{path}'"

    first = run_bot_command(
        "check", "--config", str(path), cwd=tmp_path, env={"DISCORD_TOKEN": "x"}
    )

    assert first.returncode == 2
    assert "Set DISCORD_TOKEN" not in first.stderr
    assert f"DISCORD_TOKEN is set, so run `{sys.executable} -m bot check {given}`, " in (
        first.stderr
    )
    check = run_bot_command(
        "check", "--config", str(path), cwd=tmp_path, env={"DISCORD_TOKEN": "x"}
    )
    assert f"`{sys.executable} -m generation.download {given}` to fetch them" in check.stdout
    assert f"`{sys.executable} -m generation.download {given} flux-dev`" in check.stdout
    no_token = run_bot_command("--config", str(path), cwd=tmp_path)
    assert f"then run `{sys.executable} -m bot check {given}`, " in no_token.stderr


async def test_a_token_discord_refuses_ends_in_one_clear_sentence(
    fake_discord: FakeDiscord, tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text(to_toml(bot_config(fake_discord.world, tiny_model_dirs)))
    env = {**child_environment(), **fake_discord.child_env(), "ATELIER_CONFIG": str(config)}
    env["DISCORD_TOKEN"] = "not-the-token"

    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bot", cwd=tmp_path, env=env, stderr=asyncio.subprocess.PIPE
    )
    _, stderr = await asyncio.wait_for(process.communicate(), 60)

    assert process.returncode == 1
    assert "Discord refused the token in DISCORD_TOKEN." in stderr.decode()
    assert "Traceback" not in stderr.decode()
    assert not (tmp_path / "data").exists()  # nothing was started or created


def test_an_unreachable_discord_ends_in_one_clear_sentence(
    tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text(to_toml({"models": _tiny_models(tiny_model_dirs)}))
    closed = "http://127.0.0.1:9/api/v10"  # the discard port: nothing listens there
    env = {"ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x", "DISCORD_API_BASE": closed}

    done = run_bot_command(cwd=tmp_path, env=env)

    assert done.returncode == 1
    assert "Could not reach Discord" in done.stderr
    assert "Traceback" not in done.stderr


def test_check_passes_on_a_ready_machine_and_explains_each_problem(
    tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    pickled = tmp_path / "pickled"
    (pickled / "unet").mkdir(parents=True)
    (pickled / "model_index.json").write_text('{"unet": ["diffusers", "UNet2DConditionModel"]}')
    (pickled / "unet" / "config.json").write_text("{}")
    (pickled / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"\x80\x04")
    good = tmp_path / "good.toml"
    good.write_text(to_toml({"models": _tiny_models(tiny_model_dirs), "gpus": [{"device": "cpu"}]}))
    bad = tmp_path / "bad.toml"
    models = _tiny_models(tiny_model_dirs)
    models["flux-dev"]["source"] = str(pickled)
    models["flux-schnell"]["source"] = str(tmp_path / "missing")
    bad.write_text(to_toml({"models": models, "gpus": [{"device": "cuda:3"}]}))
    token = {"DISCORD_TOKEN": "x"}

    ready = run_bot_command("check", cwd=tmp_path, env={"ATELIER_CONFIG": str(good), **token})
    broken = run_bot_command("check", cwd=tmp_path, env={"ATELIER_CONFIG": str(bad)})

    assert ready.returncode == 0, ready.stderr
    assert "All good." in ready.stdout
    assert "Database" in ready.stdout
    assert broken.returncode == 1
    lines = broken.stdout.splitlines()  # one stream: the lines stay in order when piped
    assert lines[1] == "[ERR] DISCORD_TOKEN is not set: put the bot token in the environment."
    assert f"{pickled} has no safetensors weights for unet" in broken.stdout
    assert "is not a diffusers folder" in broken.stdout
    assert "Worker cuda:3 needs GPU cuda:3" in broken.stdout
    assert lines[-1] == "4 problems found."
    assert broken.stderr == ""


def test_check_says_how_to_download_a_missing_hub_model_and_never_imports_torch(
    tmp_path: Path,
) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text(to_toml({"models": {"flux-schnell": {"source": "atelier-tests/absent"}}}))
    script = (
        "import asyncio, sys; import bot.app; from bot.check import run_checks; "
        "from bot.config import load_settings; "
        "status = asyncio.run(run_checks(load_settings())); "
        "print('imported:', sorted({m.split('.')[0] for m in sys.modules} "
        "& {'torch', 'diffusers', 'transformers'})); sys.exit(status)"
    )
    environment = {**child_environment(), "ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x"}

    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=tmp_path,
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "imported: []" in done.stdout
    fetch = f"{sys.executable} -m generation.download"  # the interpreter that has Atelier
    assert (
        "Model flux-schnell: atelier-tests/absent is not downloaded yet; run "
        f"`{fetch} flux-schnell` (scripts/start runs it)."
    ) in done.stdout
    assert "All good." not in done.stdout
    assert (
        "No problems, but 6 models are not downloaded yet (playground-v2.5, flux-dev, "
        "flux-schnell, flux2-klein-4b, flux2-klein-9b, flux-kontext-dev): "
        f"run `{fetch}` to fetch them (scripts/start does)."
    ) in done.stdout
    assert done.returncode == 0, done.stderr  # scripts/start downloads it right after the check


def _tiny_models(dirs: dict[str, Path]) -> dict[str, dict[str, Any]]:
    from generation.tiny import catalogue_config

    return catalogue_config(dirs)


@pytest.mark.slow
async def test_killed_with_jobs_queued_and_running_every_job_completes_after_restart(
    fake_discord: FakeDiscord, tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    fake = fake_discord
    config = tmp_path / "atelier.toml"
    config.write_text(to_toml(bot_config(fake.world, tiny_model_dirs)))
    env = {"ATELIER_CONFIG": str(config), "PYTHONPATH": str(REPO)}
    bot = BotProcess(fake, [sys.executable, "-m", "bot"], env=env, cwd=tmp_path)
    await bot.start(timeout=60)
    slow = {"width": 256, "height": 256, "steps": 30}
    asked = []
    for name, prompt in (("alice", "one"), ("bob", "two"), ("alice", "three"), ("carol", "four")):
        ix = await fake.slash(fake.user(name), "imagine", {"prompt": prompt, **slow})
        asked.append((name, ix))
    first = asked[0][1]
    await fake.wait_for(  # the first job is running; the others wait
        lambda: (
            first.original
            and any("Generating" in e.get("description", "") for e in first.original.embeds)
        ),
        timeout=60,
    )
    jobs = {job_id_of(ix.original): name for name, ix in asked}

    assert await bot.kill() == -9
    await bot.start(timeout=60)

    try:
        results = await fake.wait_for(
            lambda: (
                len(done := [m for m in fake.messages if "job `" in m.content and m.attachments])
                >= len(jobs)
                and done
            ),
            timeout=90,
        )
    except TimeoutError:
        raise AssertionError(
            f"not every job was delivered; the bot said:\n{bot.output()}"
        ) from None
    shown = {job_id_of(m): m for m in results}
    assert set(shown) == set(jobs)
    database = await Database.open(tmp_path / "data" / "atelier.sqlite3")
    try:
        for job_id, name in jobs.items():
            stored = await database.get_job(job_id)
            async with asyncio.timeout(10):  # the bot records the delivery just after posting
                while stored.delivered_at is None:
                    await asyncio.sleep(0.05)
                    stored = await database.get_job(job_id)
            assert stored.record.status.value == "done"
            assert fake.user(name).id == stored.record.owner.user_id
            assert fake.user(name).id in shown[job_id].mentions
        for _, ix in asked:  # the progress messages from before the kill: taken on, then removed
            assert ix.original is not None
            assert ix.original.deleted, ix.original.embeds
    finally:
        await bot.terminate()
        await database.close()


_READ_OWN_ENVIRON = """
import ctypes, os, subprocess, sys
from bot.hardening import make_undumpable
if os.geteuid() == 0:  # root reads every process: be an ordinary user, as a worker is
    os.setgid(65534)
    os.setuid(65534)
ctypes.CDLL(None).prctl(4, 1, 0, 0, 0)  # dumpable, as every process of a user starts

def another_process_reads() -> str:
    command = ["cat", f"/proc/{os.getpid()}/environ"]
    done = subprocess.run(command, capture_output=True)
    return "read" if b"ATELIER_SECRET=" in done.stdout else "refused"

before = another_process_reads()
hidden = make_undumpable()
print(before, hidden, another_process_reads())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_another_process_of_the_user_cannot_read_the_bots_environment() -> None:
    env = {**child_environment(), "ATELIER_SECRET": "token-like"}

    done = subprocess.run(
        [sys.executable, "-c", _READ_OWN_ENVIRON], env=env, capture_output=True, text=True
    )

    assert done.stdout.split() == ["read", "True", "refused"], done.stderr


_SERVE_REPORTS_DUMPABLE = """
import ctypes, sys
import bot.__main__ as main

async def serve(settings):
    print("dumpable", ctypes.CDLL(None).prctl(3, 0, 0, 0, 0))  # PR_GET_DUMPABLE

main._serve = serve
sys.exit(main.main([]))
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl is Linux's")
def test_the_bot_makes_itself_undumpable_before_it_serves(
    tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    config = tmp_path / "atelier.toml"
    config.write_text(to_toml({"models": _tiny_models(tiny_model_dirs)}))
    env = {**child_environment(), "ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x"}

    done = subprocess.run(
        [sys.executable, "-c", _SERVE_REPORTS_DUMPABLE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.stdout.strip() == "dumpable 0", done.stderr
