"""Sizes for a forward of fixed shapes: what compiled, captured (CUDA graphs) and exported
forwards give :meth:`~ssc_core.model.Symphonies.forward` as ``sizes``.

The field of view is a function of the calibration, so its count is taken as it is: one size per
calibration. The depth proposals change with every frame, so their count is rounded up to a step
of a quarter octave (at most 19 % more rows): a few sizes cover the frames of a scene, each
compiled or captured once. A margin over the count covers a compiled forward rounding the lifted
depth differently from the eager count in the last bit (a point on a voxel's boundary).
"""
import torch

from ..model import Symphonies
from ..model.decoder import SelectionSizes

SMALLEST_STEP = 256


def proposal_step(count: int, limit: int) -> int:
    """The least step ``64 * ceil(SMALLEST_STEP * 2**(k/4) / 64)`` at or above ``count`` plus
    its margin (1/64 + 8), at most ``limit``."""
    wanted = count + count // 64 + 8
    k = 0
    while (step := 64 * -(-int(SMALLEST_STEP * 2 ** (k / 4)) // 64)) < wanted:
        k += 1
    return min(step, limit)


def fixed_sizes(model: Symphonies, inputs: dict[str, torch.Tensor]) -> SelectionSizes:
    """Sizes that leave nothing of the batch ``inputs`` (``Predictor.prepare``) out; one read of
    two numbers from the device."""
    visible, proposals = model.selection_counts(**inputs).amax(0).tolist()
    return SelectionSizes(visible, proposal_step(proposals, model.decoder.num_voxels))
