"""Speed options: validated configuration, the engine's use of them (no-ops on the CPU), each
option's code path on the tiny pipelines (attention kernels, regional compile, VAE tiling); the
GPU benchmark's --tiny run."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import subprocess
import sys

import numpy as np
import pytest
import torch

from benchmarks import gpu_speed
from generation.engine import Engine
from generation.models import Catalogue, Family
from generation.pipelines import family_pipelines, speed
from generation.request import build_request
from generation.speed_options import SpeedConfigError, SpeedOptions
from tests.conftest import REPO, child_environment
from tests.generation.helpers import pixels

MODELS = ("playground-v2.5", "flux-dev")


@pytest.fixture(scope="module")
def pipelines(tiny_catalogue: Catalogue) -> dict[str, object]:
    """The tiny text-to-image pipelines, loaded through the engine's own loader."""
    loaded = {}
    for name in MODELS:
        spec = tiny_catalogue[name]
        loaded[name] = family_pipelines(spec.family).load(spec, "cpu").pipe
    return loaded


def render(pipe, catalogue: Catalogue, model: str) -> np.ndarray:
    spec = catalogue[model]
    request = build_request(catalogue, prompt="a red cube on a table", model=model, seed=7)
    arguments = family_pipelines(spec.family).arguments(request, spec, None)
    generator = torch.Generator("cpu").manual_seed(request.seeds[0])
    return pipe(**arguments | {"output_type": "np"}, generator=generator).images


# ---- configuration --------------------------------------------------------------------------


def test_speed_options_from_config() -> None:
    assert SpeedOptions.from_config({}) == SpeedOptions()
    options = SpeedOptions.from_config(
        {"dtype": "bfloat16", "compile": True, "fp8": True, "vae_tiling_megapixels": 0}
    )
    assert (options.dtype, options.compile, options.fp8) == ("bfloat16", True, True)
    assert options.vae_tiling_megapixels == 0


def test_bad_speed_options_name_every_problem() -> None:
    with pytest.raises(SpeedConfigError) as caught:
        SpeedOptions.from_config(
            {
                "dtype": "int4",
                "attention": "flash9",
                "compile": "yes",
                "turbo": 1,
                "vae_tiling_megapixels": -1,
            }
        )
    assert caught.value.problems == [
        "Unknown setting `speed.turbo`.",
        '`speed.dtype` should be one of "auto", "bfloat16", "float16" or "float32", not "int4".',
        '`speed.attention` should be one of "sdpa" or "eager", not "flash9".',
        "`speed.vae_tiling_megapixels` should be at least 0, not -1.",
        '`speed.compile` should be true or false, not "yes".',
    ]


def test_weights_stay_float32_on_the_cpu_whatever_the_options() -> None:
    for options in (SpeedOptions(), SpeedOptions(dtype="float16"), SpeedOptions(fp8=True)):
        assert speed.weights_dtype(options, "cpu", torch.bfloat16) == torch.float32
    assert speed.weights_dtype(SpeedOptions(dtype="float16"), "cuda:0", torch.bfloat16) == (
        torch.float16
    )


def test_the_bot_can_check_speed_options_without_importing_torch() -> None:
    code = (
        "import sys; from generation.speed_options import SpeedOptions; "
        "SpeedOptions.from_config({'compile': True}); print(sorted({'torch', 'diffusers'} & "
        "set(sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        env=child_environment(),
        capture_output=True,
        text=True,
        check=True,
    )
    assert result.stdout.strip() == "[]"


# ---- the engine: a plain [speed] table works; on the CPU every option is a no-op ---------------


def test_engine_takes_a_speed_table_and_keeps_cpu_images_identical(
    tiny_catalogue: Catalogue, caplog: pytest.LogCaptureFixture
) -> None:
    table = {"compile": True, "fp8": True, "attention": "eager", "vae_tiling_megapixels": 0}
    request = build_request(tiny_catalogue, prompt="a red cube", model="flux-schnell", seed=3)
    plain = Engine(tiny_catalogue).generate(request)
    caplog.clear()  # only the second engine's load; logging may already be at INFO here
    with caplog.at_level(logging.INFO, logger="generation.pipelines.base"):
        fast = Engine(tiny_catalogue, speed=table)
        images = fast.generate(request)
    assert fast.speed == SpeedOptions(
        compile=True, fp8=True, attention="eager", vae_tiling_megapixels=0
    )
    assert [image.png for image in images] == [image.png for image in plain]
    assert caplog.messages == [
        "Loaded flux-schnell on cpu in float32, full profile; speed options applied: none; "
        "skipped: "
        "attention: cpu is not a CUDA device, fp8: cpu is not a CUDA device, "
        "compile: cpu is not a CUDA device"
    ]


def block_batch_sizes(engine: Engine, request) -> tuple[list[int], list]:
    """Run `request`, noting the batch size each FLUX transformer block was called with."""
    sizes: list[int] = []

    def note(module: torch.nn.Module, args: tuple, output: tuple[torch.Tensor, ...]) -> None:
        if type(module).__name__ == "FluxTransformerBlock":
            sizes.append(output[0].shape[0])

    hook = torch.nn.modules.module.register_module_forward_hook(note)
    try:
        images = engine.generate(request)
    finally:
        hook.remove()
    return sizes, images


def test_fast_batches_denoise_a_batch_in_one_pass_and_stay_close_to_solo_runs(
    tiny_catalogue: Catalogue,
) -> None:
    batch = build_request(tiny_catalogue, prompt="a red cube", model="flux-schnell", seeds=[5, 6])
    exact_sizes, _ = block_batch_sizes(Engine(tiny_catalogue), batch)
    fast_engine = Engine(tiny_catalogue, speed={"fast_batches": True})
    fast_sizes, fast = block_batch_sizes(fast_engine, batch)

    assert set(exact_sizes) == {1}  # by default every image is denoised alone
    assert set(fast_sizes) == {2}  # with fast_batches both images go through together
    assert len(fast_sizes) == len(exact_sizes) // 2
    assert [image.seed for image in fast] == [5, 6]
    (solo,) = Engine(tiny_catalogue).generate(batch.with_seeds((6,)))
    difference = np.abs(pixels(fast[1].png).astype(int) - pixels(solo.png).astype(int))
    assert difference.max() <= 2  # the same image, up to rounding in a few pixels


def test_engine_refuses_a_bad_speed_table(tiny_catalogue: Catalogue) -> None:
    with pytest.raises(SpeedConfigError, match=r"`speed\.dtype` should be one of"):
        Engine(tiny_catalogue, speed={"dtype": "int4"})


@pytest.mark.parametrize("model", MODELS)
def test_apply_on_cpu_changes_nothing_and_says_why(pipelines, tiny_catalogue, model) -> None:
    pipe = pipelines[model]
    before = render(pipe, tiny_catalogue, model)
    everything = SpeedOptions(compile=True, fp8=True, attention="eager", vae_tiling_megapixels=0)
    report = speed.apply(pipe, tiny_catalogue[model].family, everything, "cpu")
    speed.prepare_call(pipe, everything, "cpu", 64, 64)

    assert report.applied == ()
    assert report.skipped == (
        "attention: cpu is not a CUDA device",
        "fp8: cpu is not a CUDA device",
        "compile: cpu is not a CUDA device",
    )
    assert not pipe.vae.use_tiling
    np.testing.assert_array_equal(render(pipe, tiny_catalogue, model), before)


# ---- each option's code path, exercised on the tiny pipelines ----------------------------------


@pytest.mark.parametrize("model", MODELS)
def test_eager_and_sdpa_attention_give_the_same_image(pipelines, tiny_catalogue, model) -> None:
    pipe = pipelines[model]
    denoiser = pipe.unet if model == "playground-v2.5" else pipe.transformer
    try:
        assert speed.set_attention(denoiser, "eager") == "attention: eager"
        eager = render(pipe, tiny_catalogue, model)
        if model == "playground-v2.5":
            kinds = {type(p).__name__ for p in denoiser.attn_processors.values()}
            assert kinds == {"AttnProcessor"}
        else:
            backends = {p._attention_backend for p in denoiser.attn_processors.values()}
            assert {b.value for b in backends} == {"_native_math"}
    finally:
        speed.set_attention(denoiser, "sdpa")
    sdpa = render(pipe, tiny_catalogue, model)
    np.testing.assert_allclose(eager, sdpa, atol=1e-4)
    with pytest.raises(ValueError, match="Attention must be one of sdpa, eager"):
        speed.set_attention(denoiser, "flash9")


def test_regional_compile_compiles_the_repeated_blocks_and_keeps_the_image(
    tiny_catalogue, tmp_path, monkeypatch
) -> None:
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    spec = tiny_catalogue["flux-dev"]
    pipe = family_pipelines(spec.family).load(spec, "cpu").pipe  # compiling is in place: a copy
    before = render(pipe, tiny_catalogue, "flux-dev")
    # The "eager" backend traces and runs the graphs without building kernels: fast on a CPU.
    message = speed.compile_regions(pipe.transformer, tmp_path / "inductor", backend="eager")
    blocks = [
        module
        for module in pipe.transformer.modules()
        if type(module).__name__ in pipe.transformer._repeated_blocks
    ]
    assert blocks
    assert all(block._compiled_call_impl is not None for block in blocks)
    assert message.startswith(
        "compile: regional (FluxTransformerBlock, FluxSingleTransformerBlock)"
    )
    import os

    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == str(tmp_path / "inductor")
    np.testing.assert_allclose(render(pipe, tiny_catalogue, "flux-dev"), before, atol=1e-5)
    torch._dynamo.reset()


def test_compile_cache_dir_comes_from_options_then_environment(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path / "env"))
    assert speed.cache_dir(SpeedOptions()) == tmp_path / "env"
    assert speed.cache_dir(SpeedOptions(compile_cache_dir=str(tmp_path / "opt"))) == (
        tmp_path / "opt"
    )
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert speed.cache_dir(SpeedOptions()) == tmp_path / "xdg" / "atelier" / "inductor"


def test_vae_tiling_switches_on_and_off(pipelines) -> None:
    vae = pipelines["playground-v2.5"].vae
    speed.set_vae_tiling(vae, True)
    assert vae.use_tiling
    speed.set_vae_tiling(vae, False)
    assert not vae.use_tiling


# ---- the GPU benchmark ------------------------------------------------------------------------


def test_gpu_speed_benchmark_runs_tiny_on_the_cpu() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = gpu_speed.main(
            ["--tiny", "--variants", "default,compile", "--repeat", "1", "--cap-gib", "1"]
        )
    assert code == 0
    (printed,) = out.getvalue().splitlines()
    lines = json.loads(printed)["results"]
    assert [(line["model"], line["variant"]) for line in lines] == [
        (model, variant)
        for model in (
            "playground-v2.5",
            "flux-dev",
            "flux-schnell",
            "flux2-klein-4b",
            "flux-kontext-dev",
            "flux2-klein-9b",
        )
        for variant in ("default", "compile")
    ]
    for line in lines:
        assert "error" not in line, line
        assert line["s_per_image"] > 0
        assert line["cap_gib"] is None  # no cap is applied on the CPU, so none is reported
        assert (line["size"], line["steps"], line["dtype"]) == ("64x64", 2, "float32")
        assert (
            "compile: cpu is not a CUDA device" in line["skipped"] or line["variant"] != "compile"
        )


def test_gpu_speed_benchmark_takes_up_to_each_models_number_of_references() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = gpu_speed.main(
            [
                *("--tiny", "--models", "flux2-klein-4b,flux-kontext-dev,flux-schnell"),
                *("--variants", "default", "--repeat", "1", "--references", "4"),
            ]
        )
    assert code == 0
    lines = json.loads(out.getvalue())["results"]
    assert [(line["model"], line["references"]) for line in lines] == [
        ("flux2-klein-4b", 4),
        ("flux-kontext-dev", 1),
        ("flux-schnell", 0),
    ]
    assert all("error" not in line for line in lines), lines


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA device")
def test_gpu_speed_benchmark_without_cuda_says_so_and_exits_cleanly(capsys) -> None:
    code = gpu_speed.main([])
    captured = capsys.readouterr()
    assert code == 0
    assert "No CUDA device is available" in captured.err
    assert json.loads(captured.out)["skipped"].startswith("No CUDA device")


def test_gpu_speed_builds_the_real_architectures_at_full_size(tiny_model_dirs) -> None:
    """Built on the meta device (no memory): parameter counts match the published models."""
    catalogue = Catalogue.builtin()
    expected = {  # millions of parameters
        "playground-v2.5": {"unet": 2567, "text_encoder": 123, "text_encoder_2": 695, "vae": 84},
        "flux-dev": {"transformer": 11901, "text_encoder": 123, "text_encoder_2": 4762, "vae": 84},
        # FLUX.2 [klein] 4B: a 3.9B transformer and Qwen3-4B (BFL's card: "4B")
        "flux2-klein-4b": {"transformer": 3876, "text_encoder": 4022, "vae": 84},
        # klein 9B: a 9.1B transformer and Qwen3-8B ("8.2B" on Qwen's card, its head untied)
        "flux2-klein-9b": {"transformer": 9079, "text_encoder": 8191, "vae": 84},
        # Kontext [dev]: FLUX.1 [dev]'s architecture (BFL: "a 12 billion parameter ... transformer")
        "flux-kontext-dev": {
            "transformer": 11901,
            "text_encoder": 123,
            "text_encoder_2": 4762,
            "vae": 84,
        },
    }
    tiny = {
        Family.PLAYGROUND: "playground",
        Family.FLUX: "flux-dev",
        Family.FLUX_KONTEXT: "flux-kontext",
    }
    for model, sizes in expected.items():
        family = tiny.get(catalogue[model].family, "flux2-klein")
        pipe = gpu_speed.build_pipeline(
            catalogue[model],
            tiny_model_dirs[family],
            full=True,
            device="meta",
            dtype=torch.bfloat16,
        )
        counts = {name: round(n / 1e6) for name, n in gpu_speed.parameter_count(pipe).items()}
        assert counts == sizes


def test_gpu_speed_benchmark_measures_each_memory_profile() -> None:
    out = io.StringIO()
    arguments = ["--tiny", "--models", "flux-schnell", "--variants", "default", "--repeat", "1"]
    with contextlib.redirect_stdout(out):
        code = gpu_speed.main([*arguments, "--profile", "full,fp8,fp8-offload"])
    assert code == 0
    lines = json.loads(out.getvalue())["results"]
    assert [line["profile"] for line in lines] == ["full", "fp8", "fp8-offload"]
    assert all(line["s_per_image"] > 0 for line in lines[:2])
    assert lines[2]["skipped"] == ["the fp8-offload profile needs a CUDA GPU (for CPU offload)"]
    with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()):
        gpu_speed.main([*arguments, "--profile", "q3"])
