"""The README's "Which GPU do I need?" tables, from the profiles and their computed figures.

    python -m generation.gpu_table    # prints the two Markdown tables

tests/test_gpu_table.py checks the README holds exactly what this prints. No torch.
"""

from __future__ import annotations

import sys

from generation.model_spec import Family, ModelSpec
from generation.models import Catalogue
from generation.profiles import (
    FAMILY_PROFILES,
    GIB,
    best_profile,
    layout,
    needed_gib,
    weight_memory,
)

CARDS_GB = (8, 12, 16, 24, 48, 80)
NF4_LIBRARIES = frozenset({"bitsandbytes"})
NOT_MEASURED = "not measured yet"
# FLUX.1 [schnell] lacks only [dev]'s guidance embedder (0.1%): one set of rows serves both.
OWN_ROWS_ABOVE = 0.05


def cards_table(catalogue: Catalogue) -> str:
    """Models × card sizes: the profile the automatic setup picks (with bitsandbytes installed
    where only NF4 fits: marked ¹), or — where none fits."""
    header = "| Model | " + " | ".join(f"{gb} GB" for gb in CARDS_GB) + " | s/image | peak |"
    rows = [header, "|" + " --- |" * (len(CARDS_GB) + 3)]
    for name, spec in catalogue.items():
        cells = []
        for gb in CARDS_GB:
            plain = best_profile(spec, gb)
            nf4 = best_profile(spec, gb, NF4_LIBRARIES)
            if plain is not None:
                cells.append(f"{plain.name} (~{needed_gib(spec, plain):.1f})")
            elif nf4 is not None:
                cells.append(f"{nf4.name}¹ (~{needed_gib(spec, nf4):.1f})")
            else:
                cells.append("—")
        rows.append(f"| `{name}` | " + " | ".join(cells) + f" | {NOT_MEASURED} | {NOT_MEASURED} |")
    return "\n".join(rows)


def profiles_table(catalogue: Catalogue) -> str:
    """One row per family × profile: what it does, where it runs, and the computed weight memory
    (on the GPU at once, and in all) of the family's first model; a later model of the family
    whose weights differ from that one's by more than `OWN_ROWS_ABOVE` (klein 9B beside 4B) gets
    rows of its own, and then each block names its model in the Family cell."""
    rows = [
        "| Profile | Family | What it does | Runs on | Weights on the GPU | All weights |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for family, profiles in FAMILY_PROFILES.items():
        for spec, cell in _family_blocks(catalogue, family):
            for chosen in profiles:
                figures = weight_memory()[layout(spec)]["profiles"][chosen.name]
                rows.append(
                    f"| `{chosen.name}` | {cell} | {chosen.summary} | "
                    f"{'CUDA' if chosen.cuda_only else 'CUDA, CPU'} | "
                    f"{figures['gpu_bytes'] / GIB:.1f} GiB | "
                    f"{figures['total_bytes'] / GIB:.1f} GiB |"
                )
    return "\n".join(rows)


def _family_blocks(catalogue: Catalogue, family: Family) -> list[tuple[ModelSpec, str]]:
    """The models of `family` whose figures the table shows, with their Family cell."""
    specs = [s for s in catalogue.values() if s.family is family]
    first = specs[0]
    shown = [first] + [
        spec
        for spec in specs[1:]
        if abs(_full_bytes(spec) / _full_bytes(first) - 1) > OWN_ROWS_ABOVE
    ]
    if len(shown) == 1:
        return [(first, family.value)]
    return [(spec, f"{family.value} (`{spec.name}`)") for spec in shown]


def _full_bytes(spec: ModelSpec) -> int:
    return int(weight_memory()[layout(spec)]["profiles"]["full"]["total_bytes"])


def main() -> int:
    catalogue = Catalogue.builtin()
    print(cards_table(catalogue))
    print()
    print(profiles_table(catalogue))
    return 0


if __name__ == "__main__":
    sys.exit(main())
