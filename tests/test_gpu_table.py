"""The README's "Which GPU do I need?" tables are the automatic setup's decisions and the
computed figures (`python -m generation.gpu_table`), so they cannot drift from the code."""

from __future__ import annotations

from generation.gpu_table import CARDS_GB, cards_table, profiles_table
from generation.models import Catalogue
from generation.profiles import GIB, weight_memory
from generation.workers.config import GpuInfo, discover_workers
from tests.conftest import REPO

SECTION = (REPO / "README.md").read_text().split("### Which GPU do I need?", 1)[1].split("\n## ")[0]


def test_the_readme_holds_the_tables_the_code_makes() -> None:
    catalogue = Catalogue.builtin()
    assert cards_table(catalogue) in SECTION
    assert profiles_table(catalogue) in SECTION


def test_each_cell_is_what_the_automatic_setup_decides() -> None:
    catalogue = Catalogue.builtin()
    rows = {
        line.split("|")[1].strip().strip("`"): [c.strip() for c in line.split("|")[2:-3]]
        for line in cards_table(catalogue).splitlines()[2:]
    }
    for index, gb in enumerate(CARDS_GB):
        plain, nf4 = (
            discover_workers(catalogue, [GpuInfo(0, "card", gb)], libraries)[0]
            for libraries in (frozenset(), frozenset({"bitsandbytes"}))
        )
        for name, cells in rows.items():
            cell = cells[index]
            if name in plain.models:
                assert cell.startswith(f"{plain.profile_of(name)} ("), (name, gb)
            elif name in nf4.models:
                assert cell.startswith(f"{nf4.profile_of(name)}¹ ("), (name, gb)
            else:
                assert cell == "—", (name, gb)


def test_klein_9b_has_its_own_profile_rows_and_schnell_shares_devs() -> None:
    table = profiles_table(Catalogue.builtin())
    nine = [line for line in table.splitlines() if "`flux2-klein-9b`" in line]
    four = [line for line in table.splitlines() if "`flux2-klein-4b`" in line]
    assert len(nine) == len(four) == 5  # one per klein profile
    for name, lines in (("flux2-klein-9b", nine), ("flux2-klein-4b", four)):
        full = weight_memory()[name]["profiles"]["full"]["total_bytes"] / GIB
        assert f"| {full:.1f} GiB | {full:.1f} GiB |" in lines[0], name
    assert "schnell" not in table
