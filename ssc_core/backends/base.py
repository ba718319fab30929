"""What every inference backend provides (the contract :class:`~ssc_core.predictor.Predictor` uses)."""
from typing import Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class Backend(Protocol):
    """Runs the network on prepared inputs (``Predictor.prepare``: keys ``NETWORK_INPUTS``, batch first).

    Attributes:
        name: the backend's name (one of ``BACKENDS``). device: where ``run`` wants its inputs.
        max_batch: the most frames one ``run`` takes (None: any number).
    """

    name: str
    device: torch.device
    max_batch: int | None

    def describe(self) -> str:
        """One line: backend, device, precision, mode."""

    def run(self, inputs: dict[str, torch.Tensor],
            want_logits: bool = True) -> tuple[np.ndarray, torch.Tensor | None]:
        """→ labels (B, X, Y, Z) uint8 and, when wanted, logits (B, C, X, Y, Z) float32."""
