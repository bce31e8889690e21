"""`python -m generation`: real runs in a child process (the same pixels as this process makes),
metadata that sd-parsers reads back, and exit code 2 with a message for bad arguments."""

from __future__ import annotations

import io
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from sd_parsers import ParserManager

from generation.models import Catalogue
from generation.request import build_request
from generation.tiny import catalogue_config
from tests.conftest import child_environment

PROMPT = "a lighthouse on a cliff at dusk"


# One child process runs the CLI's `main` once per family: torch is imported there only once.
_RUN_EACH = (
    "import json, sys; from generation.__main__ import main\n"
    "for argv in json.loads(sys.argv[1]): print(json.dumps({'exit': main(argv)}), flush=True)"
)


@pytest.fixture(scope="module")
def cli_runs(
    tiny_model_dirs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, tuple[int, list[dict[str, Any]]]]:
    """Model → (exit code, JSON lines) of a CLI run: two by directory, one by name (--config)."""
    root = tmp_path_factory.mktemp("cli")
    config = root / "atelier.toml"
    schnell = catalogue_config({"flux-schnell": tiny_model_dirs["flux-schnell"]})["flux-schnell"]
    config.write_text(
        "[models.flux-schnell]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in schnell.items())
    )
    common = ["--prompt", PROMPT, "--seed", "1234", "--count", "2", "--device", "cpu"]
    argvs = {
        "playground-v2.5": ["--model", str(tiny_model_dirs["playground"]), *common],
        "flux-dev": ["--model", str(tiny_model_dirs["flux-dev"]), *common],
        "flux-schnell": ["--model", "flux-schnell", "--config", str(config), *common],
    }
    argvs = {model: [*argv, "--out", str(root / model)] for model, argv in argvs.items()}
    done = subprocess.run(
        [sys.executable, "-c", _RUN_EACH, json.dumps(list(argvs.values()))],
        capture_output=True,
        text=True,
        env=child_environment(),
        check=True,
        timeout=300,
    )
    assert "100%" in done.stderr, "a progress bar"
    runs, lines = {}, []
    models = iter(argvs)
    for record in map(json.loads, done.stdout.splitlines()):
        if "exit" in record:
            runs[next(models)] = (record["exit"], lines)
            lines = []
        else:
            lines.append(record)
    return runs


@pytest.mark.parametrize("model", ["playground-v2.5", "flux-dev", "flux-schnell"])
def test_cli_makes_the_same_pixels_as_another_process(
    cli_runs: dict, tiny_catalogue: Catalogue, model: str
) -> None:
    from generation.engine import Engine

    exit_code, lines = cli_runs[model]
    assert exit_code == 0
    assert [(line["index"], line["seed"]) for line in lines] == [(0, 1234), (1, 1235)]
    request = build_request(tiny_catalogue, model=model, prompt=PROMPT, seed=1234, count=2)
    here = Engine(tiny_catalogue).generate(request)
    for line, image in zip(lines, here, strict=True):
        assert line["request"]["prompt"] == PROMPT
        assert line["request"]["seeds"] == [1234, 1235]
        with Image.open(line["path"]) as written, Image.open(io.BytesIO(image.png)) as mine:
            assert np.array_equal(np.asarray(written), np.asarray(mine))


@pytest.mark.parametrize("model", ["playground-v2.5", "flux-dev", "flux-schnell"])
def test_cli_pngs_carry_metadata_that_sd_parsers_reads(cli_runs: dict, model: str) -> None:
    _, lines = cli_runs[model]
    steps = "2" if model == "flux-schnell" else "4"
    for line in lines:
        info = ParserManager().parse(line["path"])
        (sampler,) = info.samplers
        assert [prompt.value for prompt in sampler.prompts] == [PROMPT]
        assert sampler.parameters["seed"] == str(line["seed"])
        assert sampler.parameters["steps"] == steps
        assert info.metadata["Size"] == "64x64"


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--prompt", "x"], "the following arguments are required: --model"),
        (["--model", "flux-dev", "--prompt", "x", "--count", "many"], "invalid int value"),
        (
            ["--model", "sd15", "--prompt", "x"],
            "error: Unknown model 'sd15'. Available models: playground-v2.5, flux-dev",
        ),
        (
            ["--model", "flux-schnell", "--prompt", "x", "--guidance", "2"],
            "error: flux-schnell does not take a guidance scale.",
        ),
        (
            ["--model", "flux-dev", "--prompt", "x", "--width", "1024"],
            "error: Give both a width and a height (or an aspect ratio).",
        ),
        (
            ["--model", "flux-dev", "--prompt", "x", "--init", "/no/such.png"],
            "error: Cannot read the init image /no/such.png: No such file or directory.",
        ),
        (
            ["--model", "/", "--prompt", "x"],
            "error: / is not a diffusers model directory (no readable model_index.json).",
        ),
    ],
)
def test_bad_arguments_exit_2_with_a_message(
    arguments: list[str], message: str, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "generation", *arguments, "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        env=child_environment(),
        check=False,
    )
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


# Runs the CLI's `main` and reports whether torch (and so any model) was ever imported.
_RUN_AND_REPORT = (
    "import json, sys; from generation.__main__ import main\n"
    "code = main(json.loads(sys.argv[1]))\n"
    "print(json.dumps({'torch_imported': 'torch' in sys.modules}))\n"
    "sys.exit(code)"
)


@pytest.mark.parametrize(
    ("out", "message"),
    [
        ("taken.png", "is a file; give a folder for the images."),
        ("taken.png/images", "Cannot write images to"),
        ("/proc/atelier-out", "Cannot write images to /proc/atelier-out"),
    ],
)
def test_an_unusable_output_folder_exits_2_before_the_model_is_loaded(
    out: str, message: str, tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    (tmp_path / "taken.png").write_bytes(b"an earlier result")
    argv = ["--model", str(tiny_model_dirs["flux-schnell"]), "--prompt", "x", "--device", "cpu"]
    argv += ["--out", out if out.startswith("/") else str(tmp_path / out)]

    done = subprocess.run(
        [sys.executable, "-c", _RUN_AND_REPORT, json.dumps(argv)],
        capture_output=True,
        text=True,
        env=child_environment(),
        check=False,
        timeout=120,
    )

    assert done.returncode == 2, done.stderr
    assert message in done.stderr
    assert done.stderr.count("\n") == 1, "one sentence"
    assert json.loads(done.stdout) == {"torch_imported": False}  # no model was ever loaded
    assert (tmp_path / "taken.png").read_bytes() == b"an earlier result"


def test_a_cuda_device_on_a_machine_without_one_exits_2_before_the_model_is_loaded(
    tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    argv = ["--model", str(tiny_model_dirs["flux-schnell"]), "--prompt", "x"]
    script = _RUN_AND_REPORT.replace(
        "code = main(",
        "import generation.engine as e\n"
        "e.Engine.load = lambda *a: sys.exit('the model was loaded')\ncode = main(",
    )

    done = subprocess.run(
        [
            sys.executable,
            "-c",
            script,
            json.dumps([*argv, "--device", "cuda:0", "--out", str(tmp_path)]),
        ],
        capture_output=True,
        text=True,
        env={**child_environment(), "CUDA_VISIBLE_DEVICES": ""},
        check=False,
        timeout=120,
    )

    assert done.returncode == 2, done.stderr
    assert "error: Device cuda:0 is not available: this machine has 0 CUDA GPU(s)." in done.stderr
    assert "Traceback" not in done.stderr
    assert not list(tmp_path.iterdir())


def test_ctrl_c_while_the_model_loads_says_cancelled_and_exits_130(
    tmp_path: Path, tiny_model_dirs: dict[str, Path]
) -> None:
    argv = ["--model", str(tiny_model_dirs["flux-dev"]), "--prompt", "x", "--device", "cpu"]
    process = subprocess.Popen(
        [sys.executable, "-m", "generation", *argv, "--out", str(tmp_path)],
        stderr=subprocess.PIPE,
        text=True,
        env=child_environment(),
    )
    assert process.stderr is not None
    assert process.stderr.readline().startswith("Loading ")  # before torch is even imported
    process.send_signal(signal.SIGINT)
    stderr = process.stderr.read()
    process.wait(timeout=120)

    assert process.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == "cancelled"
    assert "Traceback" not in stderr
    assert not list(tmp_path.glob("*.png"))


def test_ctrl_c_while_the_command_line_imports_says_cancelled_and_exits_130(
    tmp_path: Path,
) -> None:
    """The signal arrives at a moment the test chooses: while `python -m generation` imports
    its modules (an import hook sends it), where an escaping KeyboardInterrupt would print a
    traceback and end the process by SIGINT (-2) instead of 130."""
    script = (
        "import os, runpy, signal, sys\n"
        "class Interrupt:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name == 'generation.input_images':\n"
        "            os.kill(os.getpid(), signal.SIGINT)\n"
        "        return None\n"
        "sys.meta_path.insert(0, Interrupt())\n"
        "sys.argv = ['generation', '--model', 'flux-dev', '--prompt', 'x', '--out', sys.argv[1]]\n"
        "runpy.run_module('generation', run_name='__main__', alter_sys=True)\n"
    )

    done = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        env=child_environment(),
        timeout=120,
    )

    assert done.returncode == 130, done.stderr
    assert done.stderr.strip() == "cancelled"
    assert not list(tmp_path.iterdir())
