"""Owner-curated LoRAs: the `[loras.NAME]` catalogue, what a job asks of them, and a check that a
LoRA file fits a model, read from the safetensors headers alone (no tensor is loaded).

Needs no torch: the bot validates requests and `bot check` checks files with this module; the
worker loads the files with `generation.pipelines.adapters`.

A LoRA file holds, for each adapted layer `L` of a model part, two low-rank matrices: the diffusers
and PEFT names `PART.L.lora.down.weight` / `PART.L.lora_A.weight` (rank x in-features) and
`PART.L.lora.up.weight` / `PART.L.lora_B.weight` (out-features x rank); PART is `unet` (SDXL),
`transformer` (FLUX), `text_encoder` or `text_encoder_2`. The check finds `L.weight` in the
model's own weights of that part and compares in- and out-features. Files in the kohya naming
(`lora_unet_…`, `lora_te1_…`), whose layer names lose their dots, are checked by family only.
"""

from __future__ import annotations

import json
import re
import struct
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import Field

from generation.config_schema import (
    TABLE,
    Bool,
    Float,
    Name,
    SettingsProblems,
    Text,
    validate_table,
)
from generation.models import Family, ModelSpec

MAX_LORAS_PER_JOB = 3  # /imagine's lora1..lora3 options (README, "LoRAs")
MIN_WEIGHT, MAX_WEIGHT = -2.0, 2.0  # A1111 and ComfyUI allow more; past ±2 images fall apart
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,39}$")  # fits an autocomplete choice and `<lora:…>`
_HEADER_LIMIT = 100 * 2**20  # safetensors' own bound on a header (safetensors/src/tensor.rs)

Weight = Annotated[Float, Field(ge=MIN_WEIGHT, le=MAX_WEIGHT)]


@dataclass(frozen=True, slots=True)
class LoraTable:
    """A `[loras.NAME]` table: `source` is a Hub repository id (then `file` names the safetensors
    file in it) or a local `.safetensors` file; `family` the model family it was trained for."""

    __pydantic_config__ = TABLE

    source: Name
    family: Family
    file: Name | None = None
    weight: Weight = 1.0
    triggers: tuple[Text, ...] = ()
    licence: Text = ""
    notes: Text = ""
    enabled: Bool = True


@dataclass(frozen=True, slots=True)
class LoraSpec:
    """One catalogue entry; `weight` is the default weight, `triggers` words its training used."""

    name: str
    source: str
    family: Family
    file: str | None = None
    weight: float = 1.0
    triggers: tuple[str, ...] = ()
    licence: str = ""
    notes: str = ""
    enabled: bool = True

    @property
    def is_local(self) -> bool:
        return self.file is None

    def path(self) -> Path | None:
        """The file on this machine: the local file, or the Hub cache's copy (None: not
        downloaded yet). Never touches the network."""
        if self.is_local:
            return Path(self.source).expanduser()
        from huggingface_hub import try_to_load_from_cache

        found = try_to_load_from_cache(self.source, self.file or "")
        return Path(found) if isinstance(found, str) else None


@dataclass(frozen=True, slots=True)
class LoraUse:
    """One LoRA of a job: its catalogue name and the weight it is applied with."""

    name: str
    weight: float

    def __str__(self) -> str:
        return f"{self.name}:{format_weight(self.weight)}"


def format_weight(weight: float) -> str:
    """`weight` written so that it reads back exactly (`repr`, shortest round trip): 0.1234567
    stays 0.1234567 where `:g` would write 0.123457; whole numbers without ".0"; no "-0"."""
    text = repr(float(weight) + 0.0)  # + 0.0: -0.0 becomes 0.0
    return text.removesuffix(".0")


class LoraError(ValueError):
    """A LoRA that cannot be used, with a sentence for the person who asked."""


@dataclass(frozen=True)
class LoraCatalogue(Mapping[str, LoraSpec]):
    """The LoRAs an owner listed, by name."""

    specs: Mapping[str, LoraSpec] = field(default_factory=dict)

    @classmethod
    def from_config(cls, tables: Mapping[str, Any]) -> LoraCatalogue:
        """The `[loras]` table; raises `SettingsProblems` naming every fault."""
        problems: list[str] = []
        specs: dict[str, LoraSpec] = {}
        for name, table in tables.items():
            if not _NAME.match(name):
                problems.append(
                    f"loras.{name}: a LoRA's name is 1-40 lower-case letters, digits, '.', '_' "
                    "or '-', starting with a letter or digit."
                )
                continue
            try:
                values = validate_table(LoraTable, table, "loras", name)
            except SettingsProblems as error:
                problems += error.problems
                continue
            if values.file is None and not values.source.endswith(".safetensors"):
                problems.append(
                    f"loras.{name}: `source` should be a .safetensors file, or a Hub repository "
                    "with `file` naming one (pickle files can run code and are refused)."
                )
                continue
            if values.file is not None and not values.file.endswith(".safetensors"):
                problems.append(f"loras.{name}: `file` should name a .safetensors file.")
                continue
            specs[name] = LoraSpec(name=name, **_fields(values))
        if problems:
            raise SettingsProblems(problems)
        return cls(specs)

    def __getitem__(self, name: str) -> LoraSpec:
        return self.specs[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.specs)

    def __len__(self) -> int:
        return len(self.specs)

    def tables(self) -> dict[str, dict[str, Any]]:
        """The catalogue as `[loras]` tables of plain data (what crosses into a worker)."""
        tables: dict[str, dict[str, Any]] = {}
        for name, spec in self.specs.items():
            table = {k: getattr(spec, k) for k in _TABLE_KEYS}
            table["family"] = spec.family.value
            table["triggers"] = list(spec.triggers)
            tables[name] = {k: v for k, v in table.items() if v is not None}
        return tables

    def offered(self, family: Family, disabled: frozenset[str] = frozenset()) -> list[LoraSpec]:
        """The enabled LoRAs for `family`, by name (what autocomplete offers)."""
        return [
            spec
            for name, spec in sorted(self.specs.items())
            if spec.family is family and spec.enabled and name not in disabled
        ]

    def with_file(self, path: Path, family: Family) -> tuple[LoraCatalogue, str]:
        """This catalogue plus a local file (the CLI's `--lora PATH`), named after the file."""
        name = _file_name(path)
        spec = LoraSpec(name=name, source=str(path), family=family)
        return LoraCatalogue({**self.specs, name: spec}), name


_TABLE_KEYS = ("source", "family", "file", "weight", "triggers", "licence", "notes", "enabled")


def _fields(values: LoraTable) -> dict[str, Any]:
    return {
        "source": values.source,
        "family": values.family,
        "file": values.file,
        "weight": float(values.weight),
        "triggers": tuple(values.triggers),
        "licence": values.licence,
        "notes": values.notes,
        "enabled": values.enabled,
    }


def _file_name(path: Path) -> str:
    stem = re.sub(r"[^a-z0-9._-]+", "-", path.stem.lower()).strip("-._") or "lora"
    return stem[:40]


def parse_lora(text: str) -> tuple[str, float | None]:
    """`"name"` → (name, None); `"name:0.8"` → (name, 0.8). The weight is after the last colon,
    so a path with colons still works, and is `[-+]?[0-9]+(.[0-9]+)?` (anything else after the
    colon is part of the name). Raises LoraError for a weight of "nan"."""
    head, colon, tail = text.strip().rpartition(":")
    if not colon:
        return text.strip(), None
    if not tail.strip():  # "name:" — the weight not typed yet
        return head.strip(), None
    if tail.strip().casefold() in ("nan", "+nan", "-nan"):
        raise LoraError(f"The weight of {head!r} is not a number.")
    if _WEIGHT.fullmatch(tail.strip()) is None:
        return text.strip(), None  # no weight: the colon belongs to the name or path
    return head.strip(), float(tail) + 0.0  # + 0.0: "-0" is 0


# A weight as people write it, ASCII digits only: Python's float() also takes "0_5" (5),
# full-width "１" and Arabic-Indic "٠.٨", "inf" and "1e309".
_WEIGHT = re.compile(r"[-+]?[0-9]+(\.[0-9]+)?")


def choose_loras(
    catalogue: LoraCatalogue,
    spec: ModelSpec,
    asked: Sequence[tuple[str, float | None]],
    disabled: frozenset[str] = frozenset(),
) -> tuple[LoraUse, ...]:
    """What a person asked for as `LoraUse`s in the order given, the default weight filled in.
    Raises LoraError (unknown, disabled, for another family, repeated, too many, weight out of
    range) with a sentence that says what to do."""
    if len(asked) > MAX_LORAS_PER_JOB:
        raise LoraError(f"A job takes at most {MAX_LORAS_PER_JOB} LoRAs (got {len(asked)}).")
    uses: list[LoraUse] = []
    for name, weight in asked:
        lora = catalogue.get(name)
        if lora is None or not _offered(lora, disabled):
            fitting = ", ".join(s.name for s in catalogue.offered(spec.family, disabled))
            raise LoraError(
                f"There is no LoRA called {name[:60]!r}"
                + (f"; for {spec.name} you can use: {fitting}." if fitting else ".")
            )
        if lora.family is not spec.family:
            raise LoraError(
                f"The LoRA {name!r} is for {lora.family.value} models, not {spec.name}."
            )
        if any(use.name == name for use in uses):
            raise LoraError(f"The LoRA {name!r} is asked for twice; give it once with one weight.")
        weight = lora.weight if weight is None else weight
        if not MIN_WEIGHT <= weight <= MAX_WEIGHT:
            raise LoraError(
                f"A LoRA's weight must be between {MIN_WEIGHT:g} and {MAX_WEIGHT:g} "
                f"(got {format_weight(weight)} for {name!r})."
            )
        uses.append(LoraUse(name, float(weight)))
    return tuple(uses)


def withdrawn_lora(
    catalogue: LoraCatalogue, uses: Sequence[LoraUse], disabled: frozenset[str] = frozenset()
) -> str | None:
    """Why a job made from an earlier one (rerun, reroll, vary, upscale) cannot use its LoRAs
    `uses` (a sentence), None where it can: one was removed from the configuration or disabled
    since (`/admin loras disable`, `enabled = false`), as `/imagine` would refuse it."""
    for use in uses:
        lora = catalogue.get(use.name)
        if lora is None or not _offered(lora, disabled):
            return (
                f"This job used the LoRA {use.name[:60]!r}, which an admin has since disabled or "
                "removed, so it cannot be made again; use /imagine without it."
            )
    return None


def _offered(lora: LoraSpec, disabled: frozenset[str]) -> bool:
    return lora.enabled and lora.name not in disabled


# ---- compatibility, from the safetensors headers -----------------------------------------------

_PARTS = {  # a LoRA key's first part → the model folder whose weights it adapts
    "unet": "unet",
    "transformer": "transformer",
    "text_encoder": "text_encoder",
    "text_encoder_2": "text_encoder_2",
}
_FAMILY_DENOISER = {family: "transformer" for family in Family} | {Family.PLAYGROUND: "unet"}
_KOHYA_FAMILY = (  # name prefixes of kohya-style files → the family they were trained for
    ("lora_unet_double_blocks", Family.FLUX),
    ("lora_unet_single_blocks", Family.FLUX),
    ("lora_transformer_", Family.FLUX),
    ("lora_unet_input_blocks", Family.PLAYGROUND),
    ("lora_unet_down_blocks", Family.PLAYGROUND),
    ("lora_te1_", Family.PLAYGROUND),
    ("lora_te2_", Family.PLAYGROUND),
)
_LORA_SUFFIX = re.compile(r"\.(lora\.down|lora\.up|lora_A|lora_B)\.weight$")


# safetensors dtypes → bytes per element (https://github.com/huggingface/safetensors#format)
_DTYPE_SIZES = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "I16": 2, "U16": 2, "F16": 2,
    "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "F64": 8, "I64": 8, "U64": 8,
}  # fmt: skip
_LORA_DTYPES = ("F16", "BF16", "F32", "F64")  # a LoRA's matrices are floats; peft loads these
_SDXL_CROSS_ATTENTION = 2048  # SDXL's text features (unet config `cross_attention_dim`)


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of a safetensors header: dtype ("F16", ...) and shape."""

    dtype: str
    shape: tuple[int, ...]


def read_entries(path: Path) -> dict[str, TensorEntry]:
    """Tensor name → dtype and shape, from a safetensors file's JSON header (8-byte little-endian
    length, then JSON; https://github.com/huggingface/safetensors#format), each entry checked:
    a known dtype, a shape of non-negative integers, `data_offsets` that hold exactly that many
    bytes inside the file. Raises LoraError ("not a usable safetensors file") otherwise."""
    unusable = LoraError(f"{path.name} is not a usable safetensors file.")
    try:
        with path.open("rb") as handle:
            (length,) = struct.unpack("<Q", handle.read(8))
            if length > _HEADER_LIMIT:
                raise LoraError(f"{path.name} is not a safetensors file (its header is too long).")
            header = json.loads(handle.read(length))
            data_size = path.stat().st_size - 8 - length
    except LoraError:
        raise
    except (OSError, struct.error, ValueError, RecursionError):
        raise unusable from None
    if not isinstance(header, dict):
        raise unusable
    entries = {}
    for name, value in header.items():
        if name == "__metadata__":
            continue
        entry = _entry(value, data_size)
        if entry is None:
            raise unusable
        entries[name] = entry
    return entries


def _entry(value: object, data_size: int) -> TensorEntry | None:
    if not isinstance(value, dict):
        return None
    dtype, shape, offsets = value.get("dtype"), value.get("shape"), value.get("data_offsets")
    if dtype not in _DTYPE_SIZES or not isinstance(shape, list) or not isinstance(offsets, list):
        return None
    numbers = [*shape, *offsets]
    if len(offsets) != 2 or not all(type(n) is int and n >= 0 for n in numbers):
        return None
    count = 1
    for side in shape:
        count *= side
    begin, end = offsets
    if end - begin != count * _DTYPE_SIZES[dtype] or end > data_size:
        return None
    return TensorEntry(dtype, tuple(shape))


def read_header(path: Path) -> dict[str, list[int]]:
    """Tensor name → shape (`read_entries`). Raises LoraError for a file that is not a usable
    safetensors file."""
    return {name: list(entry.shape) for name, entry in read_entries(path).items()}


def check_fits(lora: Path, model_folder: Path, spec: ModelSpec) -> str | None:
    """Why the LoRA file `lora` cannot apply to the model `spec` in `model_folder` (a diffusers
    folder), or None when it fits: float tensors only; each adapted layer has a down and an up
    matrix (2-D, or 4-D for a convolution) of the same rank of at least 1; the layer exists in
    the model with the LoRA's in- and out-features. Kohya-named files are checked by family and
    by their cross-attention width (an SD 1.5 LoRA is refused for SDXL). Raises LoraError for a
    file that is not a usable safetensors file. Weights that are NaN cannot be seen here."""
    entries = read_entries(lora)
    if not entries:
        return f"{lora.name} holds no tensors."
    floats = [name for name, entry in entries.items() if entry.dtype not in _LORA_DTYPES]
    if floats:
        return (
            f"{lora.name} holds {entries[floats[0]].dtype} tensors ({floats[0][:80]!r}); "
            f"a LoRA's are float ({', '.join(_LORA_DTYPES)})."
        )
    tensors = {name: list(entry.shape) for name, entry in entries.items()}
    if any(map(_starts("lora_te_"), tensors)):  # SDXL's are lora_te1_/lora_te2_, FLUX's none
        return (
            f"{lora.name} was made for Stable Diffusion 1.x/2.x (one text encoder), "
            f"not {spec.name}."
        )
    kohya = [family for prefix, family in _KOHYA_FAMILY if any(map(_starts(prefix), tensors))]
    if kohya:
        if spec.family not in kohya:
            return f"{lora.name} was made for {kohya[0].value} models, not {spec.name}."
        return _kohya_problem(lora.name, tensors, model_folder, spec) or _pair_problem(
            lora.name, tensors
        )
    headers: dict[str, dict[str, list[int]]] = {}
    for key, shape in tensors.items():
        part, _, rest = key.partition(".")
        suffix = _LORA_SUFFIX.search(rest)
        if part not in _PARTS or suffix is None:
            if key.endswith(".alpha"):
                continue
            return f"{lora.name} has a tensor Atelier cannot place: {key[:80]!r}."
        if part in _FAMILY_DENOISER.values() and part != _FAMILY_DENOISER[spec.family]:
            return f"{lora.name} adapts a {part}, which {spec.name} does not have."
        if part not in headers:
            headers[part] = _part_header(model_folder / _PARTS[part])
        layer = rest[: suffix.start()] + ".weight"
        base = headers[part].get(layer)
        if base is None:
            return f"{lora.name} adapts a layer {spec.name} does not have: {part}.{layer[:80]}."
        down = suffix[1] in ("lora.down", "lora_A")
        if len(shape) < 2 or len(base) < 2:
            continue  # refused below (`_pair_problem`) where the LoRA's matrix is not 2-D
        # down: (rank, in_features); up: (out_features, rank); the model: (out, in)
        if (down and shape[1] != base[1]) or (not down and shape[0] != base[0]):
            return (
                f"{lora.name} does not fit {spec.name}: its layer {part}.{layer[:80]} has "
                f"{shape} where the model's has {base} (a LoRA for another model size?)."
            )
    return _pair_problem(lora.name, tensors)


_PAIR = re.compile(r"^(.*)\.(lora\.down|lora\.up|lora_A|lora_B|lora_down|lora_up)\.weight$")


def _pair_problem(file: str, tensors: Mapping[str, list[int]]) -> str | None:
    """Why the down/up matrices of `tensors` cannot make a LoRA: a layer with one of the two, a
    matrix that is not 2-D (4-D for a convolution), or ranks that differ or are 0 (peft refuses
    rank 0 half way through loading)."""
    pairs: dict[str, dict[bool, list[int]]] = {}
    for key, shape in tensors.items():
        match = _PAIR.match(key)
        if match is None:
            if key.endswith(".alpha"):
                continue
            return f"{file} has a tensor Atelier cannot place: {key[:80]!r}."
        down = match[2] in ("lora.down", "lora_A", "lora_down")
        pairs.setdefault(match[1], {})[down] = shape
    if not pairs:
        return f"{file} holds no LoRA matrices."
    for layer, matrices in pairs.items():
        if len(matrices) != 2:
            return f"{file} has only one of the two LoRA matrices of {layer[:80]}."
        down, up = matrices[True], matrices[False]
        if len(down) not in (2, 4) or len(up) != len(down):
            return f"{file} has LoRA matrices of {layer[:80]} shaped {down} and {up}."
        if down[0] != up[1] or down[0] < 1:
            return (
                f"{file} has LoRA matrices of {layer[:80]} of rank {down[0]} and {up[1]}; "
                "both must be the same rank, at least 1."
            )
    return None


def _kohya_problem(
    file: str, tensors: Mapping[str, list[int]], model_folder: Path, spec: ModelSpec
) -> str | None:
    """Why a kohya-named file is not for `spec`: for Playground (SDXL), an SD 1.x/2.x LoRA shows
    by its cross-attention keys' width (768 or 1024 where SDXL's are `cross_attention_dim`,
    2048). A file without such keys (one adapting only other layers) cannot be told apart."""
    if spec.family is not Family.PLAYGROUND:
        return None
    width = _cross_attention_dim(model_folder)
    for key, shape in tensors.items():
        if "attn2_to_k.lora_down" in key and len(shape) == 2 and shape[1] != width:
            return (
                f"{file} was made for another model (its cross-attention reads {shape[1]} "
                f"features; {spec.name}'s read {width}): Stable Diffusion 1.x/2.x?"
            )
    return None


def _cross_attention_dim(model_folder: Path) -> int:
    try:
        config = json.loads((model_folder / "unet" / "config.json").read_text())
        return int(config["cross_attention_dim"])
    except (OSError, ValueError, KeyError, TypeError):
        return _SDXL_CROSS_ATTENTION


def _starts(prefix: str) -> Any:
    return lambda key: key.startswith(prefix)


def _part_header(folder: Path) -> dict[str, list[int]]:
    shapes: dict[str, list[int]] = {}
    for file in sorted(folder.glob("*.safetensors")):
        shapes |= read_header(file)
    return shapes
