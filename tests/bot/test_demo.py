"""`scripts/start --demo` (`python -m bot demo`): the real bot against the fake Discord on a tiny
model prints what a person would see — the queue, the progress, the result with its buttons, an
identical rerun and a variation."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, child_environment


@pytest.mark.slow
def test_the_demo_plays_a_session_a_person_can_follow(tmp_path: Path) -> None:
    env = {**child_environment(), "ATELIER_VENV": sys.prefix, "TMPDIR": str(tmp_path)}
    env.pop("DISCORD_TOKEN", None)

    done = subprocess.run(
        [str(REPO / "scripts" / "start"), "--demo", "--no-install"],
        cwd=tmp_path,  # the script finds the checkout itself
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert 'alice › /imagine prompt:"a lighthouse at dusk, oil painting" count:2 seed:42' in out
    assert "⏳ Queued — #1 in the queue" in out
    assert "🎨 Generating on `cpu`: ▰" in out
    assert "seeds 42, 43 · job `1`" in out
    assert "[images: atelier-1-1.png" in out
    assert "Rerun · Reroll" in out
    assert "(the same pixels as job 1: yes)" in out  # the rerun
    assert "(the same pixels as job 1: no)" in out  # the variation
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.glob("atelier-demo-*"))  # its temporary folder is gone
