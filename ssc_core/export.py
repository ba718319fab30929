"""Export the whole network to ONNX: image, depth and camera geometry in; labels and logits out.

The graph takes one frame (batch 1) at the preset's image size. Data-dependent selections
(field of view, depth proposals) become ``NonZero`` + gathers/scatters, and matrix inverses a
closed form, so ONNX Runtime and TensorRT accept it; the result equals PyTorch's. For host
memory, the attention over those voxel sets runs in a fixed number of slices
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
from .presets import ONNX_METADATA_KEY, Preset

OPSET = 20  # 5-D grid_sample and current attention ops


class ExportedNetwork(nn.Module):
    """The network as exported: keyword inputs of ``Predictor.prepare`` → (labels, logits)."""

    def __init__(self, model: Symphonies):
        super().__init__()
        self.model = model

    def forward(self, img, depth, cam_K, cam_pose, voxel_origin, projected_pix, fov_mask):
        logits = self.model(img, depth, cam_K, cam_pose, voxel_origin, projected_pix, fov_mask)[-1]
        return logits.argmax(1).to(torch.uint8), logits


def export_onnx(model: Symphonies, preset: Preset, inputs: dict[str, torch.Tensor], path) -> Path:
    """Write ``path`` (one self-contained .onnx file with the preset in its metadata), checked by
    the ONNX checker. ``inputs``: one prepared frame (``Predictor.prepare``)."""
    import onnx
    path = Path(path)
    wrapper = ExportedNetwork(model.eval().cpu()).eval()
    args = tuple(inputs[k].cpu()[:1] for k in NETWORK_INPUTS)
    with torch.no_grad():
        program = torch.onnx.export(wrapper, args, dynamo=True, opset_version=OPSET,
                                    input_names=list(NETWORK_INPUTS), output_names=['labels', 'logits'])
    proto = program.model_proto
    entry = proto.metadata_props.add()
    entry.key, entry.value = ONNX_METADATA_KEY, json.dumps(preset.to_dict())
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
