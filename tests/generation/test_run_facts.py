"""What is recorded besides the request (issue 12 review F5, F6, F7): a local folder's
configuration files, FLUX's prompt length always, a cut negative prompt; and a rerun's note shows
what differs. Real tiny pipelines on CPU."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

from bot.ui.notes import prompt_cut_note
from generation.engine import Engine
from generation.jobs import JobOwner, JobRecord, JobStatus, RunFacts
from generation.models import Catalogue
from generation.pipelines.provenance import config_revision, model_revision
from generation.request import build_request
from generation.tiny import catalogue_config


def test_config_files_count_in_a_local_folders_revision(
    tiny_model_dirs: dict[str, Path], tmp_path: Path
) -> None:
    folder = tmp_path / "playground"
    shutil.copytree(tiny_model_dirs["playground"], folder)
    spec = Catalogue.from_config(catalogue_config({"playground": folder}))["playground-v2.5"]
    weights, config = model_revision(spec, folder), config_revision(spec, folder)
    assert config is not None
    assert config.startswith("sha256:")

    scheduler = folder / "scheduler" / "scheduler_config.json"
    table = json.loads(scheduler.read_text())
    scheduler.write_text(json.dumps({**table, "sigma_max": 20.0}))
    changed = config_revision(spec, folder)
    assert changed != config
    assert model_revision(spec, folder) == weights  # the weights did not change

    tokenizer = folder / "tokenizer" / "tokenizer_config.json"
    tokenizer.write_text(tokenizer.read_text().replace("77", "76"))
    assert config_revision(spec, folder) not in (config, changed)

    before = RunFacts(weights, "0.42", "2.9", "cpu", "float32", model_config=config)
    after = replace(before, model_config=changed)
    assert after.differences(before) == [
        f"the model's configuration files ({config[:60]}… → {changed[:60]}…)"
    ]


def test_a_fact_an_old_record_lacks_is_unknown_not_a_difference() -> None:
    old = RunFacts.from_dict(
        {
            "model_revision": "r",
            "diffusers": "d",
            "torch": "t",
            "device_type": "cpu",
            "precision": "float32",
        }
    )
    new = replace(old, model_config="sha256:abc", settings="max_sequence_length=512")
    assert new.differences(old) == []
    assert replace(new, settings="max_sequence_length=256").differences(new) == [
        "the pipeline settings (max_sequence_length=512 → max_sequence_length=256)"
    ]


def test_a_rerun_note_shows_the_part_that_differs() -> None:
    base = "bfloat16, sdpa attention, VAE tiles above 1.5 MP, torch.compile of the transformer"
    before = RunFacts("r", "d", "t", "cuda (NVIDIA GeForce RTX 4090)", base)
    after = replace(
        before, device_type="cuda (NVIDIA GeForce RTX 4090 D)", precision=base + ", fp8"
    )
    device, precision = after.differences(before)
    assert device.endswith("(cuda (NVIDIA GeForce RTX 4090) → cuda (NVIDIA GeForce RTX 4090 D))")
    assert precision.endswith("fp8)")
    assert len(precision) < 200


def test_flux_prompt_length_and_a_cut_negative_prompt_are_recorded(
    tiny_model_dirs: dict[str, Path],
) -> None:
    catalogue = Catalogue.from_config(catalogue_config(tiny_model_dirs))
    engine = Engine(catalogue, "cpu", preview_every=0)
    flux = build_request(catalogue, prompt="a fox", model="flux-dev", seed=3)
    (image,) = engine.generate(flux)
    assert image.facts is not None
    assert image.facts.settings == "max_sequence_length=64"
    assert image.facts.prompt_cut_at is None  # recorded though nothing was cut

    negative = " ".join(f"blur{n}" for n in range(80))
    playground = build_request(  # the plain encoder cuts (compel reads it whole)
        catalogue, prompt="a fox", negative_prompt=negative, seed=3, prompt_encoder="plain"
    )
    (image,) = engine.generate(playground)
    facts = image.facts
    assert facts is not None
    assert facts.negative_cut_at is not None
    assert facts.prompt_cut_at is None
    record = JobRecord(1, JobOwner(1), playground, JobStatus.DONE, 0.0, facts=facts)
    note = prompt_cut_note(record) or ""
    assert "does not read your negative prompt from" in note
    assert negative[facts.negative_cut_at :][:20] in note


def test_a_renamed_gguf_file_with_the_same_bytes_is_no_difference() -> None:
    before = RunFacts("r", "d", "t", "cpu", "float32", gguf=f"a.gguf sha256:{'1' * 64}")
    assert replace(before, gguf=f"renamed.gguf sha256:{'1' * 64}").differences(before) == []
    [changed] = replace(before, gguf=f"a.gguf sha256:{'2' * 64}").differences(before)
    assert changed.startswith("the GGUF file (")
