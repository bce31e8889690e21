"""The engine: turns a validated `GenerationRequest` into PNG images with a diffusers pipeline.

One `Engine` serves one device (a worker process per GPU holds one). It loads models on demand
and keeps them until `unload`; each `generate` call is one batched pipeline call with one
`torch.Generator` per image, so every image is reproducible alone from its seed. Imports torch:
only worker processes (and the CLI) import this module.
"""

from __future__ import annotations

import gc
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import diffusers
import torch
from diffusers import DiffusionPipeline
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image, ImageOps

from generation.errors import Cancelled, EngineError, ModelUnavailable, OutOfMemory
from generation.input_images import UnusableImage, open_for_pipeline
from generation.jobs import GeneratedImage, RunFacts
from generation.loras import LoraCatalogue
from generation.metadata import encode_png
from generation.models import Catalogue, ModelSpec, UnknownModel
from generation.pipelines import LoadedPipeline, PipelineFamily, family_pipelines
from generation.pipelines.adapters import AdapterError, Adapters, LoraFile
from generation.pipelines.loading import resolve_source
from generation.pipelines.profiles import effective_speed
from generation.pipelines.prompt_encoding import encoder_fact, prompt_arguments
from generation.pipelines.provenance import file_sha256, revisions
from generation.pipelines.speed import prepare_call
from generation.placement import misfit, spread_plan
from generation.previews import latent_preview_png
from generation.profiles import (
    Profile,
    UnknownProfile,
    default_profile,
    lower_profile,
    profile_for,
)
from generation.prompts import PLAIN, encoder_settings, find_cut, prompt_tokenizer
from generation.request import GenerationRequest
from generation.speed_options import SpeedOptions
from generation.workers.config import DEVICE_PATTERN

ProgressCallback = Callable[[int, int, bytes | None], None]
_T = TypeVar("_T")
log = logging.getLogger(__name__)


def check_device(device: str) -> str:
    """Return `device` if this machine has it; raise ValueError with a friendly message if not."""
    if not DEVICE_PATTERN.fullmatch(device):
        raise ValueError(f"Unknown device {device!r}; use cpu, cuda or cuda:N.")
    if device.startswith("cuda"):
        count = torch.cuda.device_count()
        index = int(device.partition(":")[2] or 0)
        if index >= count:
            raise ValueError(
                f"Device {device} is not available: this machine has {count} CUDA GPU(s)."
            )
    return device


@dataclass
class _LoadedModel:
    spec: ModelSpec
    family: PipelineFamily
    loaded: LoadedPipeline
    revision: str
    config: str | None
    memory: Profile
    adapters: Adapters
    gguf: str | None  # `RunFacts.gguf`
    image_to_image: DiffusionPipeline | None = None
    schedulers: dict[str, SchedulerMixin] = field(default_factory=dict)

    def pipeline_for(self, request: GenerationRequest) -> DiffusionPipeline:
        """The pipeline for `request` (img2img shares the loaded weights), scheduler set."""
        text_to_image = self.loaded.pipe
        if request.init_image is None:
            pipe = text_to_image
        else:
            img2img = self.family.image_to_image
            if img2img is None:  # build_request refuses an init image for such a model
                raise EngineError(f"{self.spec.name} takes no init image.")
            if self.image_to_image is None:
                self.image_to_image = img2img.from_pipe(text_to_image, dtype=text_to_image.dtype)
                self.image_to_image.set_progress_bar_config(disable=True)
            pipe = self.image_to_image
        if request.scheduler not in self.schedulers:
            self.schedulers[request.scheduler] = self.family.scheduler(
                request.scheduler, text_to_image.scheduler
            )
        pipe.scheduler = self.schedulers[request.scheduler]
        return pipe


class _StepReporter:
    """The pipeline's `callback_on_step_end`: progress, previews and cancellation."""

    def __init__(
        self,
        request: GenerationRequest,
        family: PipelineFamily,
        on_progress: ProgressCallback | None,
        should_cancel: Callable[[], bool] | None,
        preview_every: int,
    ) -> None:
        self.request = request
        self.family = family
        self.on_progress = on_progress
        self.should_cancel = should_cancel
        self.preview_every = preview_every
        self.cancelled = False

    def __call__(
        self, pipe: DiffusionPipeline, index: int, timestep: Any, tensors: dict[str, Any]
    ) -> dict[str, Any]:
        if self.cancelled:
            return {}
        if self.should_cancel is not None and self.should_cancel():
            # The pipeline skips the remaining steps; its half-done result is discarded.
            self.cancelled = pipe._interrupt = True
            return {}
        if self.on_progress is not None:
            step, total = index + 1, pipe.num_timesteps
            preview = None
            if (
                self.family.preview_factors
                and self.preview_every
                and step % self.preview_every == 0
                and step < total
            ):
                preview = self._preview(tensors["latents"], pipe.vae_scale_factor)
            self.on_progress(step, total, preview)
        return {}

    def _preview(self, latents: torch.Tensor, vae_scale_factor: int) -> bytes:
        grid = self.family.preview_latents(latents, self.request, vae_scale_factor)
        return latent_preview_png(grid, self.family.preview_factors, self.family.preview_bias)


class Engine:
    """Generates images on one device, loading models from `catalogue` as requests need them."""

    def __init__(
        self,
        catalogue: Catalogue,
        device: str = "cpu",
        *,
        preview_every: int = 4,
        offload: bool = False,
        speed: SpeedOptions | Mapping[str, Any] | None = None,
        profiles: Mapping[str, str] | None = None,
        loras: LoraCatalogue | Mapping[str, Any] | None = None,
        vram_gb: float | None = None,
        devices: Sequence[str] = (),
    ) -> None:
        """`preview_every` steps a preview accompanies progress (0: none); `offload` keeps
        weights in CPU memory between uses (for GPUs too small for a whole model). `speed`: the
        CUDA speed options, or a `[speed]` table as a plain mapping (what crosses into a worker
        process); a bad table raises SpeedConfigError. `profiles`: model → the memory profile
        it loads with (absent: full). A job that runs out of memory is retried once one profile
        down (`generation.profiles.lower_profile`); the model stays down for later jobs only
        where the worker's own profile failed at the native size or smaller, or at load (the
        learnt profiles are in `profiles`). `loras`: the LoRA catalogue, or the
        `[loras]` tables as a plain mapping. `vram_gb`: the worker's memory budget in GiB (None:
        unknown), which a rerun's profile must fit to be used; with `devices`, one pipeline
        spreads over those cards (`device` the first; `vram_gb` each card's memory)."""
        self.catalogue = catalogue
        self.device = check_device(device)
        self.preview_every = preview_every
        self.offload = offload
        self.speed = (
            speed if isinstance(speed, SpeedOptions) else SpeedOptions.from_config(speed or {})
        )
        self.profiles = dict(profiles or {})
        self.vram_gb = vram_gb
        self.devices = tuple(devices)
        self.loras = (
            loras if isinstance(loras, LoraCatalogue) else LoraCatalogue.from_config(loras or {})
        )
        self._models: dict[str, _LoadedModel] = {}

    @property
    def loaded(self) -> tuple[str, ...]:
        """Names of the models in memory, oldest first."""
        return tuple(self._models)

    @property
    def held_profiles(self) -> dict[str, str]:
        """Each loaded model → the profile it is held with now (a job stepped down for itself,
        or a rerun, may have left it held with another than its own in `profiles`)."""
        return {name: model.memory.name for name, model in self._models.items()}

    def load(self, model: str) -> None:
        """Load `model` unless it is loaded already. Raises ModelUnavailable (or OutOfMemory)."""
        self._loaded(model)

    def unload(self, model: str) -> None:
        """Free `model`'s memory (a no-op when it is not loaded)."""
        if self._models.pop(model, None) is not None:
            self._release_memory()

    def generate(
        self,
        request: GenerationRequest,
        *,
        on_progress: ProgressCallback | None = None,
        should_cancel: Callable[[], bool] | None = None,
    ) -> list[GeneratedImage]:
        """Run `request`: one image per seed, PNG bytes with metadata, in seed order.

        `on_progress(step, total, preview)` is called after every denoising step, with a small
        PNG preview every `preview_every` steps (else None). `should_cancel` is polled every step;
        when it returns True the run stops and Cancelled is raised. Raises OutOfMemory when the
        GPU runs out of memory and ModelUnavailable when the model cannot be loaded.
        """
        if should_cancel is not None and should_cancel():
            raise Cancelled("The job was cancelled before it started.")
        wanted, why = self._wanted_profile(request)
        lora_files = self._lora_files(request, wanted)  # before loading: a refusal costs nothing
        init_image = _init_image(request)
        references = _references(request)
        model = self._loaded(request.model, wanted)
        reporter = _StepReporter(
            request, model.family, on_progress, should_cancel, self.preview_every
        )
        images = self._attempt(
            lambda: self._run(model, request, init_image, references, reporter, lora_files)
        )
        if images is None:  # out of memory; the error and its frames (the pipeline) are gone
            spec, failed = model.spec, model.memory
            del model  # the last reference to the failed pipeline: freed before loading lower
            self.unload(request.model)
            lower = lower_profile(spec, failed.name, self.device, spread=bool(self.devices))
            if lower is None or (lora_files and _quantizes(lower)):
                raise self._out_of_memory(request)
            log.warning(
                "%s ran out of memory on %s with the %s profile; retrying with %s",
                request.model,
                self.device,
                failed.name,
                lower.name,
            )
            why = f"it ran out of memory with the {failed.name} profile here"
            if failed.name == self._own_profile(request.model) and self._native_or_smaller(request):
                self.profiles[request.model] = lower.name  # learnt: README, "Which GPU ..."
            try:
                model = self._loaded(request.model, lower.name)
            except OutOfMemory:
                raise self._out_of_memory(request) from None
            images = self._attempt(
                lambda: self._run(model, request, init_image, references, reporter, lora_files)
            )
            if images is None:
                raise self._out_of_memory(request)
        if reporter.cancelled:
            raise Cancelled("The job was cancelled.")
        facts = self._facts(model, request, lora_files)
        if request.profile is not None and request.profile != facts.profile:
            facts = replace(facts, profile_reason=why)
        made = []
        for index, (seed, image) in enumerate(zip(request.seeds, images, strict=True)):
            # The record always says the size made (the catalogue refuses limits a family
            # cannot honour, so this is the size asked for).
            record = replace(request, width=image.width, height=image.height)
            png = encode_png(image, record, index, facts)
            made.append(GeneratedImage(index, seed, png, image.width, image.height, facts))
        return made

    def _run(
        self,
        model: _LoadedModel,
        request: GenerationRequest,
        init_image: Image.Image | None,
        references: list[Image.Image],
        reporter: _StepReporter,
        lora_files: list[LoraFile],
    ) -> list[Image.Image]:
        """One batched pipeline call; raises torch.OutOfMemoryError as it comes."""
        pipe = model.pipeline_for(request)
        try:
            model.adapters.apply(lora_files)
        except AdapterError as error:
            if error.reload:  # part of the adapter may remain: the next job loads it afresh
                self.unload(request.model)
            raise
        prepare_call(pipe, self.speed, self.device, request.width, request.height)
        arguments = model.family.arguments(request, model.spec, init_image, references)
        arguments |= prompt_arguments(pipe, request, model.spec.family)
        generators = [torch.Generator("cpu").manual_seed(seed) for seed in request.seeds]
        with model.loaded.per_image.images(1 if self.speed.fast_batches else request.count):
            return pipe(**arguments, generator=generators, callback_on_step_end=reporter).images

    def _out_of_memory(self, request: GenerationRequest) -> OutOfMemory:
        return OutOfMemory(
            f"{self.device} ran out of memory for {request.count} image(s) of "
            f"{request.width}x{request.height}; try fewer images or a smaller size."
        )

    def _wanted_profile(self, request: GenerationRequest) -> tuple[str | None, str | None]:
        """The profile a request asks for (a rerun: its parent's) where this device can run it
        and it fits this worker's `vram_gb`, else None (the model's own here) and why not, in
        words (the job's record shows the difference and the reason)."""
        if request.profile is None or request.model not in self.catalogue:
            return None, None
        spec = self.catalogue[request.model]
        try:
            wanted = profile_for(spec, request.profile)
        except UnknownProfile:
            return None, f"{spec.family.value} models have no {request.profile} profile now"
        reason = wanted.unavailable_on(self.device) or misfit(
            spec, wanted, self.devices, self.vram_gb
        )
        return (wanted.name, None) if reason is None else (None, reason)

    def _loaded(self, name: str, wanted: str | None = None) -> _LoadedModel:
        """`name` loaded with the profile `wanted` (None: its configured one), reloading it where
        it is loaded with another."""
        try:
            spec = self.catalogue[name]
        except UnknownModel as error:
            raise ModelUnavailable(str(error)) from None
        try:
            memory = profile_for(spec, wanted or self._own_profile(name))
        except UnknownProfile as error:
            raise ModelUnavailable(str(error)) from None
        current = self._models.get(name)
        if current is not None and current.memory == memory:
            return current
        self.unload(name)
        family = family_pipelines(spec.family)
        spread = spread_plan(spec, memory, self.devices, self.vram_gb)
        options = {"offload": self.offload, "speed": self.speed, "memory": memory}
        path = resolve_source(spec)
        before = revisions(spec, path, memory.gguf)
        loaded = self._attempt(lambda: family.load(spec, self.device, **options, placement=spread))
        if loaded is None:  # out of memory; the half-placed pipeline is freed by now
            lower = lower_profile(spec, memory.name, self.device, spread=bool(self.devices))
            if lower is None:
                raise OutOfMemory(
                    f"Model {name!r} does not fit in the memory of {self.device}, "
                    "even with its smallest memory profile."
                )
            log.warning("%s does not fit %s with the %s profile", name, self.device, memory.name)
            if memory.name == self._own_profile(name):
                self.profiles[name] = lower.name  # it can never load here as it was
            return self._loaded(name, lower.name)
        read = revisions(spec, path, memory.gguf)
        if read is None or read != before:  # recorded, they would name bytes that did not run
            del loaded
            self._release_memory()
            raise ModelUnavailable(f"Model {name!r}: its files changed while it loaded; try again.")
        self._models[name] = _LoadedModel(
            spec, family, loaded, read.model, read.config, memory, Adapters(loaded.pipe), read.gguf
        )
        return self._models[name]

    def _own_profile(self, model: str) -> str:
        """The profile this worker holds `model` with (configured, or learnt since)."""
        return self.profiles.get(model) or default_profile(self.catalogue[model])

    def _native_or_smaller(self, request: GenerationRequest) -> bool:
        """Whether `request` asks no more of the GPU than one image at its model's native size
        (native_side² pixels in one pipeline batch): out of memory there means the model does
        not fit this card as it is held, not that this one job was large."""
        batch = request.count if self.speed.fast_batches else 1
        native = self.catalogue[request.model].native_side ** 2
        return request.width * request.height * batch <= native

    def _attempt(self, action: Callable[[], _T]) -> _T | None:
        """`action()`, or None when it ran out of GPU memory (torch's error or OutOfMemory),
        with the memory released. The error is dropped before releasing, since its traceback's
        frames still hold whatever the action was building or running."""
        try:
            return action()
        except (torch.OutOfMemoryError, OutOfMemory):
            pass
        self._release_memory()
        return None

    def _lora_files(self, request: GenerationRequest, wanted: str | None) -> list[LoraFile]:
        """The request's LoRA files on this machine; ModelUnavailable for one that is not, or
        where the model would run quantized (`wanted`: the profile asked for, None: its own)."""
        if not request.loras:
            return []
        # Adapters on quantized (fp8, NF4) or compiled denoisers fail or recompile in diffusers;
        # refused rather than run wrong (README, "LoRAs": memory profiles).
        unsupported = [name for name in ("fp8", "compile") if getattr(self.speed, name)]
        if unsupported and self.device.startswith("cuda"):
            raise ModelUnavailable(
                f"LoRAs cannot be used on a GPU whose model runs with [speed] "
                f"{' and '.join(unsupported)}; ask without a LoRA, or the owner can turn "
                f"{'them' if len(unsupported) > 1 else 'it'} off."
            )
        spec = self.catalogue.get(request.model)
        name = wanted or self._own_profile(request.model)
        if spec is not None and _quantizes(memory := profile_for(spec, name)):
            raise ModelUnavailable(
                f"LoRAs cannot be used with {request.model} here: it runs with the {memory.name} "
                "memory profile, which stores its weights quantized. Ask without a LoRA, or on "
                "a GPU that runs it in full precision."
            )
        files = []
        for use in request.loras:
            spec = self.loras.get(use.name)
            path = spec.path() if spec is not None else None
            if path is None or not path.is_file():
                raise ModelUnavailable(
                    f"The LoRA {use.name!r} is not available on this machine (not in the "
                    "configuration, or not downloaded: python -m generation.download)."
                )
            files.append(LoraFile(path, file_sha256(path), use.weight))
        return files

    def _facts(
        self, model: _LoadedModel, request: GenerationRequest, lora_files: list[LoraFile]
    ) -> RunFacts:
        """What besides `request` decided the pixels of this run."""
        pipe = model.loaded.pipe
        tokenizer = getattr(pipe, prompt_tokenizer(model.spec))
        cut = negative_cut = None
        if request.prompt_encoder == PLAIN:  # compel reads the whole prompt, in chunks
            cut = find_cut(request.prompt, model.spec, tokenizer)
            if request.negative_prompt:
                negative_cut = find_cut(request.negative_prompt, model.spec, tokenizer)
        loras = "; ".join(
            f"{use.name} sha256:{file.sha256} unfused"
            for use, file in zip(request.loras, lora_files, strict=True)
        )
        return RunFacts(
            model_revision=model.revision,
            diffusers=diffusers.__version__,
            torch=torch.__version__,
            device_type=self._device_type(),
            precision=self._precision(pipe.dtype, model),
            batching="fast" if self.speed.fast_batches and request.count > 1 else "per-image",
            prompt_cut_at=cut.at if cut else None,
            prompt_limit=(cut or negative_cut).limit if cut or negative_cut else "",
            negative_cut_at=negative_cut.at if negative_cut else None,
            model_config=model.config,
            settings=encoder_settings(model.spec),
            profile=model.memory.name,
            gguf=model.gguf,
            loras=loras,
            prompt_encoder=encoder_fact(request),
        )

    def _device_type(self) -> str:
        if not self.device.startswith("cuda"):
            return "cpu"
        return f"cuda ({torch.cuda.get_device_name(self.device)})"

    def _precision(self, dtype: torch.dtype, model: _LoadedModel) -> str:
        """The weights' dtype and the `[speed]` options that change pixels on this device (fp8
        only where the memory profile left it to them: the profile is recorded on its own)."""
        parts = [str(dtype).removeprefix("torch.")]
        if self.device.startswith("cuda"):
            speed = effective_speed(self.speed, model.memory, model.family.denoiser)
            parts.append(f"{speed.attention} attention")
            parts.append(f"VAE tiles above {speed.vae_tiling_megapixels:g} MP")
            parts += ["fp8"] * speed.fp8 + ["compiled"] * speed.compile
        return ", ".join(parts)

    def _release_memory(self) -> None:
        gc.collect()
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()


def _init_image(request: GenerationRequest) -> Image.Image | None:
    """The request's init image upright, in RGB, scaled and centre-cropped to the request's size."""
    if request.init_image is None:
        return None
    try:
        upright = open_for_pipeline(request.init_image)  # PNG, JPEG or WebP only
    except UnusableImage as error:
        raise EngineError(f"The init image cannot be used: {error.message}") from None
    return ImageOps.fit(upright, (request.width, request.height), Image.Resampling.LANCZOS)


def _references(request: GenerationRequest) -> list[Image.Image]:
    """The request's reference images upright, in RGB, as stored (each family's pipeline fits
    them to its own sizes)."""
    try:
        return [open_for_pipeline(data) for data in request.input_images]
    except UnusableImage as error:
        raise EngineError(f"A reference image cannot be used: {error.message}") from None


def _quantizes(memory: Profile) -> bool:
    """Whether `memory` stores weights quantized (fp8, NF4, GGUF), where LoRAs are refused."""
    return bool(memory.fp8 or memory.nf4 or memory.gguf)
