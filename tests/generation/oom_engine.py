"""An engine on a card too small for any model in its full profile: the CPU never runs out of
memory on a tiny model, a GPU would, with torch's own error. The one fake of the pool tests of
memory profiles (`test_profiles_learnt`); a worker process builds it by its path."""

from __future__ import annotations

from typing import Any

import torch

from generation.engine import Engine


class FullDoesNotFit(Engine):
    def _run(self, model: Any, *args: Any) -> Any:
        if model.memory.name == "full":
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return super()._run(model, *args)
