"""Command line: generate images without Discord — to try a model or check a GPU box.

    python -m generation --model NAME_OR_DIR --prompt TEXT [--negative TEXT] [--seed N]
        [--steps N] [--guidance X] [--width W --height H | --aspect W:H] [--count N]
        [--scheduler S] [--init IMAGE --strength S] [--ref IMAGE ...] [--raw]
        [--lora NAME_OR_PATH[:WEIGHT]]... [--device cpu|cuda|cuda:N] [--offload]
        [--config atelier.toml] --out DIR

The API models of Black Forest Labs (`flux-pro-1.1`, `flux-2-pro`, ...; `generation.hosted`)
run when `BFL_API_KEY` is set (`BFL_API_URL` names another host); `--raw` is FLUX1.1 [pro]
Ultra's raw mode. `--ref` gives reference images (in order) to the models that take them: FLUX.2
[klein] up to 4, FLUX.1 Kontext one, and the API models that take them.

`--model` is a catalogue name or a diffusers directory (its family is read from
`model_index.json`; an `atelier.json` beside it supplies catalogue settings). `--lora` (up to
three) names a `[loras]` entry of `--config` or a local .safetensors file, with an optional weight
(`--lora detail:0.8`; default: the entry's weight, or 1). Each image is
written as a PNG with metadata and announced by one JSON line on stdout: its path, index, seed
and the full request. Everything that can be checked before a model is loaded is checked first
(the request, the output folder, the device): a fault exits with code 2 and one sentence. A model
that cannot run exits with 1; Ctrl-C cancels the run at any time, loading included (exit 130).
"""

from __future__ import annotations

import os
import signal
import sys

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANCELLED = 130


def _cancel(signum: int, frame: object) -> None:
    """Ctrl-C before the run can stop between steps: say so and exit 130 at once. Installed
    before anything else is imported, so that no moment of the start (imports, reading the
    catalogue, loading torch and the model) lets a KeyboardInterrupt escape: an uncaught one
    prints a traceback, and Python then ends the process by SIGINT itself instead of exiting
    130. Nothing is raised: an exception thrown into a library's import machinery can be
    swallowed or turned into another error (diffusers' lazy imports do both). Nothing has been
    written yet, so there is nothing to clean up."""
    sys.stderr.write("cancelled\n")
    sys.stderr.flush()
    os._exit(EXIT_CANCELLED)


signal.signal(signal.SIGINT, _cancel)

import argparse  # noqa: E402 (after the handler: see `_cancel`)
import json  # noqa: E402
import re  # noqa: E402
import tempfile  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from generation.config_file import read_loras_tables, read_models_tables  # noqa: E402
from generation.config_schema import SettingsProblems  # noqa: E402
from generation.hosted.catalogue import HOSTED_MODELS, hosted_models  # noqa: E402
from generation.hosted.settings import ApiSettings, SettingsError  # noqa: E402
from generation.input_images import UnusableImage, canonical_png  # noqa: E402
from generation.jobs import GeneratedImage  # noqa: E402
from generation.loras import LoraCatalogue, LoraError, parse_lora  # noqa: E402
from generation.models import (  # noqa: E402
    BUILTIN_MODELS,
    Catalogue,
    CatalogueError,
    UnknownModel,
    spec_table,
)
from generation.request import GenerationRequest, RequestError, build_request  # noqa: E402
from generation.tiny import SETTINGS_FILE  # noqa: E402
from generation.workers.config import DEVICE_PATTERN  # noqa: E402

_NUMBERED = re.compile(r"^(\d+)-")


class UsageError(Exception):
    """Arguments that cannot be used; the message says why."""


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m generation", description="Generate images with an Atelier model."
    )
    parser.add_argument("--model", required=True, help="catalogue name or diffusers directory")
    parser.add_argument("--prompt", required=True)
    parser.add_argument("--negative", help="negative prompt (Playground only)")
    parser.add_argument("--seed", type=int, help="first image's seed (random if not given)")
    parser.add_argument("--steps", type=int)
    parser.add_argument("--guidance", type=float)
    parser.add_argument("--width", type=int)
    parser.add_argument("--height", type=int)
    parser.add_argument("--aspect", help="an aspect ratio such as 16:9, instead of a size")
    parser.add_argument("--count", type=int, default=1, help="images (1-4), one seed each")
    parser.add_argument("--scheduler")
    parser.add_argument("--init", type=Path, help="init image for image-to-image")
    parser.add_argument("--strength", type=float, help="how far to move from --init (0-1]")
    parser.add_argument(
        "--ref",
        type=Path,
        action="append",
        help="a reference image (klein: up to 4, Kontext: 1, API models; repeatable)",
    )
    parser.add_argument("--raw", action="store_true", help="raw mode (FLUX1.1 [pro] Ultra)")
    parser.add_argument(
        "--lora",
        action="append",
        default=[],
        metavar="NAME_OR_PATH[:WEIGHT]",
        help="a [loras] name or a .safetensors file, with an optional weight (repeatable)",
    )
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: cuda if any)")
    parser.add_argument(
        "--offload", action="store_true", help="keep weights in CPU memory (small GPUs)"
    )
    parser.add_argument("--config", type=Path, help="a TOML file whose [models] extend the list")
    parser.add_argument("--out", required=True, type=Path, help="directory for the PNGs")
    return parser.parse_args(argv)


def catalogue_for(model: str, config: Path | None) -> tuple[Catalogue, str]:
    """The catalogue (built-ins, `--config` models, a `--model` directory) and the model name."""
    tables: dict[str, Any] = {}
    if config is not None:
        try:
            tables = read_models_tables(config)
        except ValueError as error:
            raise UsageError(str(error)) from None
    name = model
    directory = Path(model).expanduser()
    if directory.is_dir():
        name, tables[name] = directory_model(directory)
    hosted = hosted_models()
    if not hosted and any(m.name == name for m in HOSTED_MODELS):
        raise UsageError(
            f"{name} runs on Black Forest Labs' API: set BFL_API_KEY to your key to use it."
        )
    return Catalogue.from_config(tables).with_hosted(hosted), name


def directory_model(directory: Path) -> tuple[str, dict[str, Any]]:
    """A catalogue table for a diffusers directory, named after it.

    The family comes from `model_index.json`; a FLUX transformer without guidance embedding is
    timestep-distilled like schnell and takes schnell's settings. `atelier.json` overrides.
    """
    try:
        index = json.loads((directory / "model_index.json").read_text())
    except (OSError, ValueError):
        raise UsageError(
            f"{directory} is not a diffusers model directory (no readable model_index.json)."
        ) from None
    pipeline = index.get("_class_name", "")
    if pipeline.startswith("StableDiffusionXL"):
        reference = "playground-v2.5"
    elif pipeline.startswith("Flux2Klein"):
        reference = "flux2-klein-4b"
    elif pipeline.startswith("FluxKontext"):
        reference = "flux-kontext-dev"
    elif pipeline.startswith("Flux"):
        reference = "flux-dev" if _guidance_embeds(directory) else "flux-schnell"
    else:
        raise UsageError(
            f"{directory} holds a {pipeline or 'unknown'} pipeline; Atelier runs SDXL "
            "(Playground), FLUX.1, FLUX.1 Kontext and FLUX.2 [klein] models."
        )
    spec = next(spec for spec in BUILTIN_MODELS if spec.name == reference)
    table = spec_table(spec) | {"source": str(directory), "title": directory.name, "licence": ""}
    settings = directory / SETTINGS_FILE
    if settings.is_file():
        try:
            table |= json.loads(settings.read_text())
        except ValueError as error:
            raise UsageError(f"Cannot read {settings}: {error}") from None
    return directory.name, table


def _guidance_embeds(directory: Path) -> bool:
    try:
        config = json.loads((directory / "transformer" / "config.json").read_text())
    except (OSError, ValueError):
        return True
    return bool(config.get("guidance_embeds", True))


def read_image(path: Path, what: str) -> bytes:
    """The canonical PNG of the image at `path` (as the bot stores uploads)."""
    try:
        return canonical_png(path.read_bytes())
    except OSError as error:
        raise UsageError(f"Cannot read the {what} {path}: {error.strerror}.") from None
    except UnusableImage as error:
        raise UsageError(f"{path}: {error.message}") from None


def loras_for(
    args: argparse.Namespace, catalogue: Catalogue, model: str
) -> tuple[LoraCatalogue, list[tuple[str, float | None]]]:
    """The LoRA catalogue (`--config`'s `[loras]` plus `--lora` files) and the LoRAs asked for."""
    if args.lora and model in catalogue.hosted:
        raise UsageError(f"{model} runs at Black Forest Labs and takes no LoRA.")
    try:
        loras = LoraCatalogue.from_config(read_loras_tables(args.config) if args.config else {})
        asked = []
        for text in args.lora:
            name, weight = parse_lora(text)
            path = Path(name).expanduser()
            if name not in loras and path.suffix == ".safetensors":
                if not path.is_file():
                    raise UsageError(f"--lora {name}: no such file.")
                loras, name = loras.with_file(path, catalogue[model].family)
            asked.append((name, weight))
    except (ValueError, LoraError, SettingsProblems) as error:
        raise UsageError(str(error)) from None
    return loras, asked


def request_from(
    args: argparse.Namespace,
    catalogue: Catalogue,
    model: str,
    loras: LoraCatalogue | None = None,
    asked: list[tuple[str, float | None]] | None = None,
) -> GenerationRequest:
    init_image = None if args.init is None else read_image(args.init, "init image")
    return build_request(
        catalogue,
        model=model,
        prompt=args.prompt,
        negative_prompt=args.negative,
        width=args.width,
        height=args.height,
        aspect=args.aspect,
        steps=args.steps,
        guidance=args.guidance,
        scheduler=args.scheduler,
        seed=args.seed,
        count=args.count,
        init_image=init_image,
        strength=args.strength,
        raw=args.raw or None,
        input_images=[read_image(path, "reference image") for path in args.ref or ()],
        loras=asked or (),
        lora_catalogue=loras,
    )


def next_number(out: Path) -> int:
    """One more than the highest `NNNNN-` prefix in `out`, so runs never overwrite each other."""
    numbers = [int(m[1]) for p in out.glob("*.png") if (m := _NUMBERED.match(p.name))]
    return max(numbers, default=0) + 1


def check_output_folder(out: Path) -> None:
    """Make `out` and prove a file can be written there, before any work is done."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} is a file; give a folder for the images.")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
    except OSError as error:
        raise UsageError(f"Cannot write images to {out}: {error.strerror}.") from None


def check_device(device: str | None) -> None:
    if device is not None and not DEVICE_PATTERN.fullmatch(device):
        raise UsageError(f"Unknown device {device!r}; use cpu, cuda or cuda:N.")


def main(argv: list[str] | None = None) -> int:
    args = parse_arguments(argv)
    try:
        catalogue, model = catalogue_for(args.model, args.config)
        if model not in catalogue and model not in catalogue.hosted:
            raise UsageError(str(UnknownModel(model, [*catalogue, *catalogue.hosted])))
        loras, asked = loras_for(args, catalogue, model)
        request = request_from(args, catalogue, model, loras, asked)
        check_device(args.device)
        check_output_folder(args.out)
        settings = ApiSettings.from_environment() if request.model in catalogue.hosted else None
    except (UsageError, RequestError, CatalogueError, SettingsError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    if settings is not None:
        from generation.hosted.cli import run_hosted

        return run_hosted(request, settings, lambda images: write_images(args.out, request, images))
    return run(args, catalogue, request, loras)


def run(
    args: argparse.Namespace,
    catalogue: Catalogue,
    request: GenerationRequest,
    loras: LoraCatalogue | None = None,
) -> int:
    print(f"Loading {request.model} ...", file=sys.stderr, flush=True)
    # Imported only now: torch takes seconds to load, and bad arguments should fail at once.
    import torch
    from tqdm import tqdm

    from generation.engine import Engine
    from generation.errors import Cancelled, EngineError

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    try:
        engine = Engine(catalogue, device, preview_every=0, offload=args.offload, loras=loras)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    try:
        engine.load(request.model)
    except EngineError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_FAILED
    interrupted: list[bool] = []
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    with tqdm(total=request.steps, unit="step", file=sys.stderr) as bar:

        def on_progress(step: int, total: int, preview: bytes | None) -> None:
            bar.total = total
            bar.update(step - bar.n)

        try:
            images = engine.generate(
                request, on_progress=on_progress, should_cancel=lambda: bool(interrupted)
            )
        except Cancelled:
            print("cancelled", file=sys.stderr)
            return EXIT_CANCELLED
        except EngineError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_FAILED
    write_images(args.out, request, images)
    return 0


def write_images(out: Path, request: GenerationRequest, images: Sequence[GeneratedImage]) -> None:
    """Write each image as `NNNNN-SEED.png` in `out` and announce it by a JSON line."""
    from generation.metadata import image_record

    number = next_number(out)
    for image in images:
        path = out / f"{number + image.index:05d}-{image.seed}.png"
        path.write_bytes(image.png)
        print(
            json.dumps({"path": str(path), **image_record(request, image.index, image.facts)}),
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
