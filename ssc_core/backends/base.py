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
        """→ labels (B, X, Y, Z) uint8 and, when wanted, logits (B, C, X, Y, Z) float32.

        Raises NonFiniteOutput (see :func:`check_finite`) instead of labels from NaN or inf logits.
        """


class NonFiniteOutput(RuntimeError):
    """The network computed NaN or inf logits (finite weights can): its labels would be garbage
    (mostly class 0, an empty scene), so none are returned. ``kind``: the warning's name."""
    kind = 'non_finite_output'


def check_finite(logits: torch.Tensor) -> None:
    """NonFiniteOutput naming the frames of logits (B, C, ...) that hold a NaN or inf."""
    low, high = torch.aminmax(logits.flatten(1), dim=1)
    bad = (~(torch.isfinite(low) & torch.isfinite(high))).nonzero().flatten().tolist()
    if bad:
        raise NonFiniteOutput(f'the network computed NaN or inf logits for frame '
                              f'{", ".join(map(str, bad))} of {len(logits)} (weights that load but '
                              'compute garbage?); no labels for it')
