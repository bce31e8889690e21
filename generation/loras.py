"""Owner-curated LoRAs: the `[loras.NAME]` catalogue and what a job asks of them (the check that
a LoRA file fits a model, from its safetensors headers: `generation.lora_headers`).

Needs no torch: the bot validates requests with this module; the worker loads the files with
`generation.pipelines.adapters`.
"""

from __future__ import annotations

import re
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
