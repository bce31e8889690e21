"""The README's "Which GPU do I need?" tables, from the profiles and their computed figures.

    python -m generation.gpu_table    # prints the two Markdown tables

tests/test_gpu_table.py checks the README holds exactly what this prints. No torch.
"""

from __future__ import annotations

import sys

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
    of the family's first built-in model (on the GPU at once, and in all)."""
    rows = [
        "| Profile | Family | What it does | Runs on | Weights on the GPU | All weights |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for family, profiles in FAMILY_PROFILES.items():
        spec = next(s for s in catalogue.values() if s.family is family)
        for chosen in profiles:
            figures = weight_memory()[layout(spec)]["profiles"][chosen.name]
            rows.append(
                f"| `{chosen.name}` | {family.value} | {chosen.summary} | "
                f"{'CUDA' if chosen.cuda_only else 'CUDA, CPU'} | "
                f"{figures['gpu_bytes'] / GIB:.1f} GiB | {figures['total_bytes'] / GIB:.1f} GiB |"
            )
    return "\n".join(rows)


def main() -> int:
    catalogue = Catalogue.builtin()
    print(cards_table(catalogue))
    print()
    print(profiles_table(catalogue))
    return 0


if __name__ == "__main__":
    sys.exit(main())
