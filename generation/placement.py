"""One pipeline over several small cards: which whole component goes on which card.

Plain data, no torch: the bot checks a `[[gpus]]` table with `devices = [...]` against it, and the
worker places the components as the plan says (`generation.pipelines.loading.place`). diffusers
places whole components, never parts of one (its pipeline `device_map` is per component), so
the plan is per component too, computed from the stored weight figures
(`generation.profiles.component_bytes`).

The rule: the denoiser and the VAE go on one card with room for the activations (the denoiser's
and the VAE decode's: `ACTIVATION_GIB`); the text encoders, largest first, each on the card with
most room left. Every card keeps `CUDA_CONTEXT_GIB` for its CUDA context. Offloading profiles are
not offered there: diffusers refuses `enable_model_cpu_offload` on a device-mapped pipeline, and
a second card is the alternative to offloading.
"""

from __future__ import annotations

from collections.abc import Sequence

from generation.errors import ModelUnavailable
from generation.model_spec import ModelSpec
from generation.profiles import (
    ACTIVATION_GIB,
    CUDA_CONTEXT_GIB,
    GIB,
    Profile,
    component_bytes,
    installed_libraries,
    ladder,
    needed_gib,
)

DENOISERS = ("transformer", "unet")
IMAGE_SIDE = ("vae",)  # decodes the denoiser's latents: kept on the denoiser's card


def plan(
    spec: ModelSpec, chosen: Profile, devices: Sequence[str], card_gib: float
) -> dict[str, str] | None:
    """Component → device for `spec` held as `chosen` over `devices`, each card of `card_gib`
    GiB; None when no placement by the rule above fits (or `chosen` offloads)."""
    if chosen.offload or len(devices) < 2:
        return None
    sizes = {name: size / GIB for name, size in component_bytes(spec, chosen).items()}
    room = {device: card_gib - CUDA_CONTEXT_GIB for device in devices}
    placed: dict[str, str] = {}
    image_side = [name for name in sizes if name in DENOISERS or name in IMAGE_SIDE]
    need = sum(sizes[name] for name in image_side) + ACTIVATION_GIB[spec.family]
    home = max(room, key=room.__getitem__)  # cards are alike; the first of the roomiest
    if need > room[home]:
        return None
    room[home] -= need
    placed |= dict.fromkeys(image_side, home)
    for name in sorted(set(sizes) - set(placed), key=sizes.__getitem__, reverse=True):
        # Another card first: the denoiser's card keeps its room for larger images.
        device = max(room, key=lambda d: (room[d], d != home))
        if sizes[name] > room[device]:
            return None
        room[device] -= sizes[name]
        placed[name] = device
    return placed


def best_spread_profile(
    spec: ModelSpec,
    devices: Sequence[str],
    card_gib: float,
    libraries: frozenset[str] | None = None,
) -> Profile | None:
    """The best-quality profile of `spec` that `plan` places over `devices` with the optional
    `libraries` present (default: those installed here), or None."""
    libraries = installed_libraries() if libraries is None else libraries
    for candidate in ladder(spec):
        if candidate.library is not None and candidate.library not in libraries:
            continue
        if plan(spec, candidate, devices, card_gib) is not None:
            return candidate
    return None


def spread_plan(
    spec: ModelSpec, chosen: Profile, devices: Sequence[str], card_gib: float | None
) -> dict[str, str] | None:
    """The worker's `plan` for `spec`: None without `devices` (one card); raises
    ModelUnavailable, saying why, where its cards do not hold it as `chosen`."""
    if not devices:
        return None
    found = plan(spec, chosen, devices, card_gib or 0.0)
    if found is None:
        raise ModelUnavailable(
            f"Model {spec.name!r} does not fit the {len(devices)} cards of this worker with its "
            f"{chosen.name} profile (offloading profiles cannot spread over cards)."
        )
    return found


def misfit(
    spec: ModelSpec, chosen: Profile, devices: Sequence[str], card_gib: float | None
) -> str | None:
    """Why a worker with `devices` (or one card) and `card_gib` GiB per card (None: unknown)
    cannot hold `spec` as `chosen`, in words, or None when it can (or nothing is known)."""
    if devices:
        if plan(spec, chosen, devices, card_gib or 0.0) is None:
            return f"the {chosen.name} profile does not fit this worker's cards together"
        return None
    need = needed_gib(spec, chosen)
    if card_gib is not None and need > card_gib:
        return (
            f"the {chosen.name} profile needs ~{need:.1f} GiB, more than this GPU's "
            f"{card_gib:g} GiB"
        )
    return None
