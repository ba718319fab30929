"""Export the whole network to ONNX: image, depth and camera geometry in; labels, logits and the
frame's selection counts out.

The graph takes one frame (batch 1) at the preset's image size and has static shapes: the
field-of-view and depth-proposal selections are fixed-size (:class:`SelectionSizes`, stored in
the file's metadata; the ``selection_counts`` output says whether a frame fits them), matrix
inverses a closed form; no ``NonZero``, so ONNX Runtime and TensorRT take it as it is, and the
result equals PyTorch's. For host memory, the attention over those voxel sets runs in slices
(:mod:`ssc_core.model.chunks`) and the class head's transposed convolutions as one small
convolution per output parity (:func:`~ssc_core.model.subpixel_head.phase_convolutions`).
"""
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .files import atomic_path
from .frame_inputs import NETWORK_INPUTS
from .model import Symphonies
from .model.decoder import SelectionSizes
from .presets import ONNX_METADATA_KEY, ONNX_SIZES_KEY, Preset

OPSET = 20  # 5-D grid_sample and current attention ops


OUTPUTS = ('labels', 'logits', 'selection_counts')


class ExportedNetwork(nn.Module):
    """The network as exported: keyword inputs of ``Predictor.prepare`` → labels (B, X, Y, Z)
    uint8, logits (B, C, X, Y, Z) and selection_counts (B, 2) int64, the frame's voxels in view
    and depth proposals (a frame fits the graph when they are at most ``sizes``)."""

    def __init__(self, model: Symphonies, sizes: SelectionSizes):
        super().__init__()
        self.model = model
        self.sizes = sizes

    def forward(self, img, depth, cam_K, cam_pose, voxel_origin, projected_pix, fov_mask):
        logits = self.model(img, depth, cam_K, cam_pose, voxel_origin, projected_pix, fov_mask,
                            sizes=self.sizes)[-1]
        counts = self.model.selection_counts(depth, cam_K, cam_pose, voxel_origin, fov_mask)
        return logits.argmax(1).to(torch.uint8), logits, counts


def export_onnx(model: Symphonies, preset: Preset, inputs: dict[str, torch.Tensor], path,
                sizes: SelectionSizes) -> Path:
    """Write ``path`` (one self-contained .onnx file with the preset and ``sizes`` in its
    metadata), checked by the ONNX checker. ``inputs``: one prepared frame (``Predictor.prepare``)."""
    import onnx
    path = Path(path)
    wrapper = ExportedNetwork(model.eval().cpu(), SelectionSizes(*map(int, sizes))).eval()
    args = tuple(inputs[k].cpu()[:1] for k in NETWORK_INPUTS)
    with torch.no_grad():
        program = torch.onnx.export(wrapper, args, dynamo=True, opset_version=OPSET,
                                    input_names=list(NETWORK_INPUTS), output_names=list(OUTPUTS))
    proto = program.model_proto
    for key, value in ((ONNX_METADATA_KEY, preset.to_dict()), (ONNX_SIZES_KEY, wrapper.sizes._asdict())):
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, json.dumps(value)
    with atomic_path(path) as tmp:
        onnx.save_model(proto, str(tmp), save_as_external_data=False)
        onnx.checker.check_model(str(tmp))
    return path


def compare(reference: torch.Tensor, labels: np.ndarray, logits: torch.Tensor | None) -> dict:
    """Agreement of a backend's output with reference logits (B, C, X, Y, Z)."""
    ref_labels = reference.argmax(1).cpu().numpy()
    out = {'argmax_agreement': float((labels == ref_labels).mean())}
    if logits is not None:
        diff = (logits.float().cpu() - reference.cpu()).abs()
        out['max_abs_logit_diff'] = float(diff.max())
    return out
