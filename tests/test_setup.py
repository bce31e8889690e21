"""`make test` installs the CPU build of torch: from PyTorch's CPU wheel index by default, from
pip's configured index when `TORCH_INDEX_URL` is empty, as `.ci/run` sets it."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

# What a `make test TORCH_INDEX_URL=` running this test passes down (MAKEFLAGS, and the command
# line's variables as environment variables).
INHERITED = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "TORCH_INDEX_URL")


def planned(tmp_path: Path, *variables: str) -> str:
    """What `make test` would run for a fresh virtual environment (`make -n`: nothing runs),
    without the variables of a `make` this test may run under."""
    return subprocess.run(
        ["make", "-n", "test", f"VENV={tmp_path / 'venv'}", *variables],
        cwd=REPO,
        env={k: v for k, v in os.environ.items() if k not in INHERITED},
        capture_output=True,
        text=True,
        check=True,
    ).stdout


pytestmark = pytest.mark.skipif(shutil.which("make") is None, reason="needs make")


def test_make_test_takes_torch_from_the_cpu_wheel_index(tmp_path: Path) -> None:
    (torch_line,) = [line for line in planned(tmp_path).splitlines() if "torch==" in line]
    assert "--index-url https://download.pytorch.org/whl/cpu torch==2.13.0" in torch_line


def test_an_empty_index_leaves_pip_its_configured_index_as_ci_does(tmp_path: Path) -> None:
    (torch_line,) = [
        line for line in planned(tmp_path, "TORCH_INDEX_URL=").splitlines() if "torch==" in line
    ]
    assert "--index-url" not in torch_line
    assert "make test TORCH_INDEX_URL=" in (REPO / ".ci" / "run").read_text()
