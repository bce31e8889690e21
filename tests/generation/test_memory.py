"""The stored weight-memory figures are what the configurations give, recomputed on meta."""

from __future__ import annotations

import json

import pytest

from generation import memory
from generation.profiles import WEIGHT_MEMORY_FILE, weight_memory


@pytest.fixture(scope="module")
def recomputed() -> dict:
    return memory.compute_all()


def test_the_stored_figures_match_a_recomputation(recomputed: dict) -> None:
    stored = json.loads(WEIGHT_MEMORY_FILE.read_text())
    assert {k: v for k, v in stored.items() if k != "_source"} == {
        k: v for k, v in recomputed.items() if k != "_source"
    }
    assert stored["_source"].startswith("python -m generation.memory")
    assert weight_memory() == stored  # what the bot reads


def test_full_size_shapes_give_the_published_parameter_counts(recomputed: dict) -> None:
    # FLUX.1: "a 12 billion parameter rectified flow transformer" (model card); T5 v1.1 XXL's
    # encoder 4.76 B; SDXL's UNet 2.57 B (SDXL paper, table 1: 2.6 B). bf16/fp16: 2 bytes each.
    flux = recomputed["flux-dev"]["profiles"]["full"]["components"]
    assert 11.8e9 < flux["transformer"] / 2 < 12.0e9
    assert 4.7e9 < flux["text_encoder_2"] / 2 < 4.8e9
    unet = recomputed["playground-v2.5"]["profiles"]["full"]["components"]["unet"]
    assert 2.55e9 < unet / 2 < 2.6e9
    # schnell lacks only dev's guidance embedder.
    schnell = recomputed["flux-schnell"]["profiles"]["full"]["components"]["transformer"]
    assert 0 < flux["transformer"] - schnell < 30e6


def test_klein_4b_and_9b_give_their_published_sizes(recomputed: dict) -> None:
    # BFL's model cards: a "4B" and a "9B" flow model; Qwen's: Qwen3-4B "4.0B" and Qwen3-8B
    # "8.2B" parameters (the 8B's output head untied, the 4B's tied to its embeddings).
    small, large = (
        recomputed[name]["profiles"]["full"]["components"]
        for name in ("flux2-klein-4b", "flux2-klein-9b")
    )
    assert 3.8e9 < small["transformer"] / 2 < 4.0e9
    assert 9.0e9 < large["transformer"] / 2 < 9.2e9
    assert 3.9e9 < small["text_encoder"] / 2 < 4.1e9
    assert 8.1e9 < large["text_encoder"] / 2 < 8.3e9
    assert small["vae"] == large["vae"]  # one autoencoder for the family


def test_each_profile_counts_its_layout(recomputed: dict) -> None:
    flux = recomputed["flux-dev"]["profiles"]
    full, fp8, nf4 = (
        flux[name]["components"]["transformer"] for name in ("full", "fp8", "nf4-offload")
    )
    # fp8 halves what layerwise casting casts; the norms' modulation Linears stay bf16.
    assert full / 2 < fp8 < full * 0.7
    # NF4: 4 bits plus a float32 scale per 64 weights (4.5 bits) on the Linear weights.
    assert full / 4 < nf4 < full * 0.3
    offload = flux["fp8-offload"]
    assert offload["gpu_bytes"] == max(offload["components"].values()) < offload["total_bytes"]
