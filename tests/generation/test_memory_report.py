"""A worker's memory report covers every card it holds (one pipeline over two cards)."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest

from generation.workers.runtime import memory_report

MIB = 2**20
GIB_IN_MIB = 1024


def test_the_memory_report_of_a_two_card_worker_sums_both_cards(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # torch's CUDA queries faked: this test is about the sum over cards (no GPU here).
    free = {"cuda:0": 2 * GIB_IN_MIB * MIB, "cuda:1": 10 * GIB_IN_MIB * MIB}
    allocated = {"cuda:0": 9 * GIB_IN_MIB * MIB, "cuda:1": GIB_IN_MIB * MIB}
    cuda = SimpleNamespace(
        is_available=lambda: True,
        mem_get_info=lambda card: (free[card], 12 * GIB_IN_MIB * MIB),
        memory_allocated=allocated.__getitem__,
    )
    monkeypatch.setitem(sys.modules, "torch", SimpleNamespace(cuda=cuda))

    both = memory_report(("cuda:0", "cuda:1"))
    first = memory_report(("cuda:0",))

    assert (both["gpu_total_mib"], both["gpu_used_mib"]) == (24 * GIB_IN_MIB, 12 * GIB_IN_MIB)
    assert both["gpu_allocated_mib"] == 10 * GIB_IN_MIB
    assert (first["gpu_total_mib"], first["gpu_used_mib"]) == (12 * GIB_IN_MIB, 10 * GIB_IN_MIB)
    assert "gpu_total_mib" not in memory_report(("cpu",))
