"""The model catalogue: what each model is, where its weights come from, its defaults and limits.

Three models are built in (Playground v2.5, FLUX.1-dev, FLUX.1-schnell). An owner adds more models
of a known family, or points a built-in name at a local diffusers directory, through configuration
(a mapping such as one parsed from TOML) — no code needed::

    [models.my-sdxl-finetune]
    family = "playground"
    source = "/models/my-finetune"      # a Hub id or a local diffusers directory
    native_side = 1024
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import Field

from generation.builtin_models import BUILTIN_MODELS
from generation.config_schema import (
    TABLE,
    Bool,
    Float,
    Int,
    Name,
    PositiveFloat,
    SettingsProblems,
    Text,
    toml_value,
    validate_table,
)
from generation.model_spec import (
    ASPECT_TOLERANCE,
    FAMILY_MAX_REFERENCES,
    FAMILY_REFERENCE,
    FAMILY_SCHEDULERS,
    FAMILY_SIDE_MULTIPLE,
    IMG2IMG_FAMILIES,
    Family,
    ModelLimits,
    ModelSpec,
)
from generation.profiles import GGUF_PROFILES

if TYPE_CHECKING:
    from generation.hosted.catalogue import HostedModel

__all__ = [
    "ASPECT_TOLERANCE",
    "BUILTIN_MODELS",
    "FAMILY_MAX_REFERENCES",
    "FAMILY_SCHEDULERS",
    "FAMILY_SIDE_MULTIPLE",
    "IMG2IMG_FAMILIES",
    "Catalogue",
    "CatalogueError",
    "Family",
    "ModelLimits",
    "ModelSpec",
    "ModelTable",
    "UnknownModel",
    "spec_table",
]


class UnknownModel(LookupError):
    """A model name that the catalogue does not hold."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        self.known = known
        super().__init__(f"Unknown model {name!r}. Available models: {', '.join(known)}.")


class CatalogueError(ValueError):
    """Model configuration that cannot be used (unknown family, bad limits, ...); `problems`
    holds one sentence per fault."""

    def __init__(self, *problems: str) -> None:
        self.problems = list(problems)
        self.valid: Catalogue | None = None  # from `from_config`: the catalogue less the faults
        super().__init__(" ".join(problems))


Count = Annotated[Int, Field(ge=1)]
Side = Annotated[Int, Field(ge=8)]
Scale = Annotated[Float, Field(ge=0)]


@dataclass(frozen=True, slots=True)
class ModelTable:
    """A `[models.NAME]` table of the configuration: every key optional, typed and ranged.

    What a table does not set comes from the built-in model of that name, or for a new name from
    its family's reference model (`family` and `source` are then required). The keys are
    `ModelSpec`'s and `ModelLimits`'s; `guidance` is the default scale and `guidance_adjustable`
    whether a request may change it.
    """

    __pydantic_config__ = TABLE

    family: Family | None = None
    source: Name | None = None  # a Hub id or a local diffusers folder
    title: Name | None = None
    steps: Count | None = None
    guidance: Scale | None = None
    schedulers: Annotated[tuple[Name, ...], Field(min_length=1)] | None = None
    native_side: Side | None = None
    max_sequence_length: Count | None = None
    variant: Text | None = None
    vram_gb: Scale | None = None
    licence: Text | None = None
    cost_factor: PositiveFloat | None = None
    min_side: Side | None = None
    max_side: Side | None = None
    multiple_of: Side | None = None
    max_megapixels: PositiveFloat | None = None
    max_steps: Count | None = None
    min_guidance: Scale | None = None
    max_guidance: Scale | None = None
    negative_prompt: Bool | None = None
    max_prompt_chars: Count | None = None
    guidance_adjustable: Bool | None = None
    max_references: Annotated[Int, Field(ge=0)] | None = None
    gguf: Name | None = None  # a `.gguf` file holding the transformer, quantized

    def values(self) -> dict[str, Any]:
        """The keys this table sets."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) is not None
        }


class Catalogue(Mapping[str, ModelSpec]):
    """The models this installation offers, by name."""

    def __init__(
        self,
        specs: list[ModelSpec] | tuple[ModelSpec, ...],
        hosted: tuple[HostedModel, ...] = (),
    ) -> None:
        self._specs = {spec.name: spec for spec in specs}
        if not self._specs:
            raise CatalogueError("The catalogue holds no model.")
        # The API models (`generation.hosted`): requests name them like local models, but no
        # worker runs them, so they are not among the mapping's items.
        self.hosted: dict[str, HostedModel] = {model.name: model for model in hosted}
        if clash := sorted(set(self.hosted) & set(self._specs)):
            raise CatalogueError(
                f"{', '.join(clash)}: named like a hosted API model; give the local model "
                "another name."
            )

    def with_hosted(self, hosted: tuple[HostedModel, ...]) -> Catalogue:
        """This catalogue offering the API models `hosted` too."""
        return Catalogue(list(self._specs.values()), hosted)

    @classmethod
    def builtin(cls) -> Catalogue:
        return cls(BUILTIN_MODELS)

    @classmethod
    def from_config(
        cls, models: Mapping[str, Mapping[str, Any]], *, include_builtin: bool = True
    ) -> Catalogue:
        """Build a catalogue from `[models.NAME]` tables.

        A table named like a built-in model overrides only the keys it sets (say, `source` to use
        a local copy). A new name needs `family` and `source`; everything else defaults to the
        family's reference model (Playground v2.5 or FLUX.1-dev), limits included.
        Raises `CatalogueError` naming every fault of every table, each with its key's path.
        """
        specs = {spec.name: spec for spec in BUILTIN_MODELS} if include_builtin else {}
        problems: list[str] = []
        for name, table in models.items():
            nested = _dotted_names(name, table)
            problems += [
                f"`[models.{dotted}]` was read as tables inside tables: TOML splits a table's "
                f'name at each dot. Quote a model name that holds a dot: `[models."{dotted}"]`.'
                for dotted in nested
            ]
            if nested:
                table = {k: v for k, v in table.items() if not isinstance(v, Mapping)}
                if not table:
                    continue
            try:
                values = validate_table(ModelTable, table, "models", name).values()
            except SettingsProblems as error:
                problems.extend(error.problems)
                values = _valid_part(table)  # the cross-checks still run on the valid keys
                if values is None:
                    continue
            try:
                base = specs.get(name) or _family_template(name, values)
                specs[name] = _apply_overrides(base, name, values)
            except CatalogueError as error:
                problems.extend(error.problems)
        if problems:
            error = CatalogueError(*problems)
            error.valid = cls(list(specs.values()))  # the tables without faults, for checks
            raise error
        return cls(list(specs.values()))

    def __getitem__(self, name: str) -> ModelSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise UnknownModel(name, list(self._specs)) from None

    def __contains__(self, name: object) -> bool:
        # Mapping's default catches only KeyError; UnknownModel is a LookupError.
        return name in self._specs

    def __iter__(self) -> Iterator[str]:
        return iter(self._specs)

    def __len__(self) -> int:
        return len(self._specs)

    @property
    def default(self) -> ModelSpec:
        """The first model: what a request gets when it names none."""
        return next(iter(self._specs.values()))


_SPEC_KEYS = {f.name for f in dataclasses.fields(ModelSpec)} - {"limits", "name"}
# In a table, `guidance` is the default scale; whether a request may change it is
# `guidance_adjustable` (the ModelLimits field `guidance`).
_LIMIT_ALIASES = {"guidance_adjustable": "guidance"}
_LIMIT_KEYS = {f.name for f in dataclasses.fields(ModelLimits)} - _SPEC_KEYS | set(_LIMIT_ALIASES)


def spec_table(spec: ModelSpec) -> dict[str, Any]:
    """`spec` as a `[models.NAME]` table: `Catalogue.from_config` turns it back into `spec`."""
    table = {key: getattr(spec, key) for key in _SPEC_KEYS}
    table["family"] = spec.family.value
    table["schedulers"] = list(spec.schedulers)
    for key in _LIMIT_KEYS:
        table[key] = getattr(spec.limits, _LIMIT_ALIASES.get(key, key))
    return table


def _valid_part(table: Any) -> dict[str, Any] | None:
    """The keys of a faulty `[models.NAME]` table that are valid on their own, or None when its
    `family` or `source` is faulty (what the table is, is then unknown) or it is no table."""
    if not isinstance(table, Mapping):
        return None
    valid: dict[str, Any] = {}
    for key, value in table.items():
        try:
            valid |= validate_table(ModelTable, {key: value}).values()
        except SettingsProblems:
            if key in ("family", "source"):
                return None
    return valid


def _dotted_names(name: str, table: Any) -> list[str]:
    """The names a table holds as tables of its own (no model key is a table): what an unquoted
    `[models.playground-v2.5]` becomes (`models."playground-v2"."5"`), written back with dots."""
    if not isinstance(table, Mapping):
        return []
    names = []
    for key, value in table.items():
        if isinstance(value, Mapping):
            names += _dotted_names(f"{name}.{key}", value) or [f"{name}.{key}"]
    return names


def _family_template(name: str, values: Mapping[str, Any]) -> ModelSpec:
    if "family" not in values or "source" not in values:
        raise CatalogueError(f"`models.{name}` is a new model: it needs a `family` and a `source`.")
    reference = next(
        spec for spec in BUILTIN_MODELS if spec.name == FAMILY_REFERENCE[values["family"]]
    )
    return dataclasses.replace(reference, name=name, title=name, variant=None, licence="")


def _apply_overrides(base: ModelSpec, name: str, values: Mapping[str, Any]) -> ModelSpec:
    spec_changes = {k: v for k, v in values.items() if k in _SPEC_KEYS}
    limit_changes = {_LIMIT_ALIASES.get(k, k): v for k, v in values.items() if k in _LIMIT_KEYS}
    family = spec_changes.pop("family", base.family)
    limits = dataclasses.replace(base.limits, **limit_changes)
    spec = dataclasses.replace(base, limits=limits, **spec_changes)
    problems = _limit_problems(spec)
    if family is not base.family:
        problems.insert(
            0,
            f"`models.{name}.family` is {toml_value(family.value)}, but {name} is a "
            f"{base.family.value} model: leave `family` out of a built-in model's table, "
            "or give yours a new name.",
        )
    if problems:
        raise CatalogueError(*problems)
    return spec


def gguf_problems(spec: ModelSpec) -> list[str]:
    """Why `spec`'s `gguf` key cannot work, read from the configuration alone: a family without
    GGUF support, or a file that is not a `.gguf` one (whether it exists is checked where it is
    read: a worker may see another disk)."""
    if spec.gguf is None:
        return []
    prefix = f"`models.{spec.name}.gguf`"
    if spec.family not in GGUF_PROFILES:
        families = ", ".join(family.value for family in GGUF_PROFILES)
        return [
            f"{prefix}: {spec.family.value} models cannot load a GGUF file (diffusers reads "
            f"GGUF transformers of {families} models only)."
        ]
    if not spec.gguf.lower().endswith(".gguf"):
        return [
            f"{prefix} = {toml_value(spec.gguf)} is not a .gguf file: Atelier reads only .gguf "
            "and safetensors weights (other formats, such as pickle checkpoints, can run code "
            "when loaded)."
        ]
    return []


def _limit_problems(spec: ModelSpec) -> list[str]:
    """Every value that contradicts another (a default its own limits refuse, limits that
    exclude each other) or that the family cannot honour (a scheduler it lacks, a size it would
    not make exactly): each would fail jobs, so the configuration is refused."""
    limits, prefix = spec.limits, f"`models.{spec.name}`"
    family_step = FAMILY_SIDE_MULTIPLE[spec.family]
    step = limits.multiple_of
    offered = FAMILY_SCHEDULERS[spec.family]
    problems = [
        f"{prefix}: scheduler {toml_value(name)} is not one {spec.family.value} models offer "
        f"({', '.join(offered)})."
        for name in spec.schedulers
        if name not in offered
    ]
    if spec.steps > limits.max_steps:
        problems.append(
            f"{prefix}: steps = {spec.steps} is more than max_steps ({limits.max_steps})."
        )
    if limits.min_guidance > limits.max_guidance:
        problems.append(f"{prefix}: min_guidance is larger than max_guidance.")
    elif not limits.min_guidance <= spec.guidance <= limits.max_guidance:
        problems.append(
            f"{prefix}: guidance = {spec.guidance:g} is outside min_guidance..max_guidance "
            f"({limits.min_guidance:g} to {limits.max_guidance:g})."
        )
    if limits.min_side > limits.max_side:
        problems.append(f"{prefix}: min_side is larger than max_side.")
    elif not limits.min_side <= spec.native_side <= limits.max_side:
        problems.append(
            f"{prefix}: native_side = {spec.native_side} is outside min_side..max_side "
            f"({limits.min_side} to {limits.max_side})."
        )
    if limits.min_side**2 > limits.max_megapixels * 1_000_000:
        problems.append(
            f"{prefix}: max_megapixels = {limits.max_megapixels:g} is smaller than the smallest "
            f"image min_side allows ({limits.min_side}x{limits.min_side})."
        )
    if step % family_step:
        problems.append(
            f"{prefix}: multiple_of = {step} cannot be honoured; {spec.family.value} "
            f"models make sides in multiples of {family_step}, so use {family_step} or a "
            f"multiple of it (say {family_step * max(1, round(step / family_step))})."
        )
    else:
        problems += [
            f"{prefix}: {key} = {value} must be a multiple of multiple_of ({step})."
            for key, value in (("min_side", limits.min_side), ("max_side", limits.max_side))
            if value < step or value % step
        ]
    problems += gguf_problems(spec)
    most = FAMILY_MAX_REFERENCES.get(spec.family, 0)
    if not 0 <= limits.max_references <= most:
        problems.append(
            f"{prefix}: max_references = {limits.max_references} is more than "
            f"{spec.family.value} models take ({most})."
        )
    return problems
