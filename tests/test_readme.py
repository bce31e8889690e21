"""The README's shell blocks, run as a newcomer runs them: in a fresh copy of the checkout, in
README order, in one shell with the virtual environment activated as the README says. Only the
commands in `SKIPPED` are left out, each for the reason given; every other one must end with the
status in `STATUS` (0 unless listed). The commands the programs print are run as printed too."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from bot.config import settings_from_mapping
from tests.conftest import REPO

README = REPO / "README.md"

NETWORK = "installs packages from the network (its first run is tested in tests/test_packaging.py)"
HUB = "needs the real model from the Hugging Face Hub (and a GPU to be quick)"
SKIPPED = {
    "scripts/start": NETWORK,
    "make test": "is the whole test run itself; CI runs it through .ci/run",
    "python -m bot # runs the bot": "needs Discord (tests/bot/test_process.py runs it against "
    "the fake Discord)",
    "docker compose logs -f bot": "needs Docker",
    "docker compose run --rm bot check": "needs Docker",
    "docker compose up -d --build": "needs Docker",
    "docker compose down": "needs Docker",
    "scripts/start --docker": "needs Docker",
    "rsync -a data/images/ backups/images/": "needs rsync, which CI images lack; the test copies "
    "the folder the same way instead",
    "python -m benchmarks.gpu_speed": "needs a GPU",
    "python -m benchmarks.gpu_speed --models flux-dev --variants default,compile,fp8+compile": (
        "needs a GPU"
    ),
    "python -m benchmarks.gpu_speed --tiny": "runs for minutes on a CPU; "
    "tests/generation/test_speed.py covers it",
    ".venv/bin/pytest tests/bot -q": "runs part of this test suite from inside it",
    "scripts/start --demo": "tests/bot/test_demo.py runs the demo",
    'BFL_API_KEY=bfl_your_key python -m generation --model flux-2-pro --prompt "a lighthouse '
    'at dusk" --aspect 16:9 --seed 42 --ref out/00001-42.png --out out/': "needs a Black Forest "
    "Labs key and credits; tests/hosted/test_cli.py runs it against the fake BFL API",
}
HUB_COMMANDS = (
    "python -m generation --model playground-v2.5",
    'python -m generation --model flux-schnell --prompt "the same',
)
STATUS = {"python -m bot # first time: writes atelier.toml (commented) and exits": 2}


def shell_commands(text: str) -> list[tuple[str, str]]:
    """(command, its key: the command and its comment, spaces squeezed) for each command of
    each ```sh block, continuation lines joined."""
    commands = []
    for block in re.findall(r"```sh\n(.*?)```", text, re.S):
        for line in block.replace("\\\n", " ").splitlines():
            if not line.strip():
                continue
            command = re.sub(r"\s+#.*$", "", line).strip()
            commands.append((command, " ".join(line.split())))
    return commands


def skip_reason(command: str, key: str) -> str | None:
    if command.startswith(HUB_COMMANDS):
        return HUB
    return SKIPPED.get(key, SKIPPED.get(command))


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh copy of the checkout (tracked and new files, nothing ignored), with `.venv`
    standing for the environment `scripts/start` would have made: this test's own."""
    root = tmp_path_factory.mktemp("clone")
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=REPO,
        capture_output=True,
        check=True,
        text=True,
    ).stdout.split("\0")
    for name in filter(None, files):
        source = REPO / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    (root / ".venv").symlink_to(Path(sys.prefix))
    return root


def environment(clone: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ATELIER_", "DISCORD_"))}
    env.update(PYTHONPATH=str(clone), HF_HUB_OFFLINE="1", VIRTUAL_ENV="")
    return env


def test_every_readme_command_works_as_printed(clone: Path) -> None:
    commands = shell_commands(README.read_text())
    assert (
        "scripts/start",
        "scripts/start # set up and start the bot (first run: writes "
        "atelier.toml and tells you the one thing to do)",
    ) in commands
    ran = [(command, key) for command, key in commands if skip_reason(command, key) is None]
    script = ["set -u"]
    for index, (command, _) in enumerate(ran):
        script += [command, f'echo "@@ {index} $?"']
        if command.startswith("mkdir -p backups"):  # stands in for the skipped rsync line
            script.append(
                "mkdir -p backups/images && cp -R data/images/. backups/images/ 2>/dev/null; true"
            )
    done = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        cwd=clone,
        env=environment(clone),
        capture_output=True,
        text=True,
        timeout=600,
    )
    statuses = dict(
        (int(m[1]), int(m[2])) for m in re.finditer(r"^@@ (\d+) (\d+)$", done.stdout, re.M)
    )
    output = done.stdout + done.stderr
    for index, (command, key) in enumerate(ran):
        assert statuses.get(index) == STATUS.get(key, 0), f"{command!r} failed:\n{output}"
    assert "Traceback" not in output
    assert "python -m bot check" in {command for command, _ in ran}
    assert list((clone / "out").glob("*.png")), "the tiny model made images"


def test_the_commands_the_bot_prints_work_as_printed(clone: Path, tmp_path: Path) -> None:
    env = {**environment(clone), "ATELIER_CONFIG": str(tmp_path / "atelier.toml")}
    env["PATH"] = f"{clone / '.venv' / 'bin'}{os.pathsep}{env['PATH']}"  # activated

    first = subprocess.run(
        ["python", "-m", "bot"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    printed = re.findall(r"`([^`]+)`", first.stderr)

    assert first.returncode == 2
    assert printed == ["python -m bot check", "python -m generation.download", "python -m bot"]
    check = subprocess.run(
        ["bash", "-c", printed[0]],
        cwd=tmp_path,
        env={**env, "DISCORD_TOKEN": "x"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    assert "run `python -m generation.download` to fetch them" in check.stdout


def test_the_skipped_commands_are_still_in_the_readme() -> None:
    keys = {key for _, key in shell_commands(README.read_text())} | {
        command for command, _ in shell_commands(README.read_text())
    }
    assert set(SKIPPED) <= keys


def test_every_toml_block_of_the_readme_is_a_valid_configuration(tmp_path: Path) -> None:
    blocks = re.findall(r"```toml\n(.*?)```", README.read_text(), re.S)
    assert len(blocks) >= 4
    env = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": "t"}  # as the Ray section's step 3 says
    for block in blocks:
        table = tomllib.loads(block)
        settings = settings_from_mapping(table, env, base_dir=tmp_path)  # raises ConfigError
        for name in table.get("models", {}):
            assert name in settings.catalogue, block


def test_scripts_start_prints_commands_that_work_from_the_folder_it_was_run_in(
    clone: Path, tmp_path: Path
) -> None:
    env = {**environment(clone), "ATELIER_CONFIG": str(tmp_path / "atelier.toml")}
    env.pop("PYTHONPATH")

    first = subprocess.run(
        [str(clone / "scripts" / "start"), "--no-install"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    printed = re.findall(r"`([^`]+)`", first.stderr)

    assert first.returncode == 2, first.stderr
    assert [command.split(" ", 1)[1] for command in printed] == [
        "-m bot check",
        "-m generation.download",
        "-m bot",
    ]
    check = subprocess.run(
        ["bash", "-c", printed[0]],
        cwd=tmp_path,
        env={**env, "DISCORD_TOKEN": "x", "PYTHONPATH": str(clone)},  # as installed there
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert check.returncode == 0, check.stdout + check.stderr
