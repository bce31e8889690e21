"""Diffusers pipelines, one module per model family. Only worker processes import this package."""

from __future__ import annotations

from generation.models import Family
from generation.pipelines.base import LoadedPipeline, PipelineFamily
from generation.pipelines.flux import FluxFamily
from generation.pipelines.flux2_klein import Flux2KleinFamily
from generation.pipelines.flux_kontext import FluxKontextFamily
from generation.pipelines.playground import PlaygroundFamily

_FAMILIES: dict[Family, PipelineFamily] = {
    Family.PLAYGROUND: PlaygroundFamily(),
    Family.FLUX: FluxFamily(),
    Family.FLUX2_KLEIN: Flux2KleinFamily(),
    Family.FLUX_KONTEXT: FluxKontextFamily(),
}


def family_pipelines(family: Family) -> PipelineFamily:
    """The pipeline family serving every model of `family`."""
    return _FAMILIES[family]


__all__ = ["LoadedPipeline", "PipelineFamily", "family_pipelines"]
