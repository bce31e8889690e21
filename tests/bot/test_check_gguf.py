"""`bot check` on GGUF files that can never load: cut, a FIFO, or not the model's transformer.
Each is one [ERR] line, in a check that ends, beside an [ok] for a good file."""

from __future__ import annotations

import os
from pathlib import Path

from tests.bot.test_process import run_bot_command
from tests.generation.gguf_files import write_gguf


def test_check_refuses_gguf_files_that_cannot_load_and_passes_a_good_one(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    good = write_gguf(tiny_model_dirs["flux-dev"], tmp_path / "good.gguf")
    (tmp_path / "cut.gguf").write_bytes(good.read_bytes()[:3000])
    os.mkfifo(tmp_path / "fifo.gguf")  # opening it would wait for a writer forever
    klein = write_gguf(tiny_model_dirs["flux2-klein"], tmp_path / "klein.gguf")
    files = {"good": good, "cut": tmp_path / "cut.gguf", "fifo": tmp_path / "fifo.gguf"}
    files["klein"] = klein
    tables = "".join(
        f'[models.{name}]\nfamily = "flux"\nsource = "{tiny_model_dirs["flux-dev"]}"\n'
        f'gguf = "{path}"\n\n'
        for name, path in files.items()
    )
    config = tmp_path / "atelier.toml"
    config.write_text(  # a budget: the automatic choice reads each file's header
        tables
        + f'[[gpus]]\ndevice = "cuda:0"\nvram_gb = 40\nmodels = {list(files)}\n'.replace("'", '"')
    )
    env = {"ATELIER_CONFIG": str(config), "DISCORD_TOKEN": "x", "PATH": os.environ["PATH"]}

    done = run_bot_command("check", cwd=tmp_path, env=env)

    lines = done.stdout.splitlines()
    assert "Traceback" not in done.stderr
    assert f"[ok ] Model good: weights found in {tiny_model_dirs['flux-dev']}." in lines
    assert (
        "[ERR] Model cut: its `gguf` file: cut.gguf has a broken GGUF header (IndexError)." in lines
    )
    assert f"[ERR] Model fifo: its `gguf` file: {files['fifo']} is not a regular file." in lines
    [refused] = [line for line in lines if line.startswith("[ERR] Model klein:")]
    assert refused.startswith(
        "[ERR] Model klein: its `gguf` file: klein.gguf is not klein's transformer: it lacks "
    )
