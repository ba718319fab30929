"""ONNX Runtime with TensorRT → CUDA → CPU execution providers, from a file made by
``python -m ssc_core.tools.export`` (checked by :mod:`.onnx_model` before a session exists).

ONNX Runtime's own telemetry is off: ``ssc_core`` sets ``ORT_DISABLE_TELEMETRY=1`` before
onnxruntime is imported (see ``ssc_core/__init__.py``).
"""
import json
import logging

import numpy as np
import torch

from .. import ORT_IMPORTED_FIRST, ORT_TELEMETRY_VARIABLE
from ..checkpoint import CheckpointError
from ..model.decoder import SelectionSizes
from ..presets import ONNX_SIZES_KEY, Preset
from .base import check_finite
from .onnx_model import OUTPUT_TYPES, input_shapes, output_shapes, read_preset
from .torch_backend import to_numpy

log = logging.getLogger('ssc_core.onnxruntime')
GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')
CPU_PROVIDER = 'CPUExecutionProvider'


def read_sizes(metadata: dict[str, str], preset: Preset, path) -> SelectionSizes:
    """The selection sizes an exported model was made for (its ``ONNX_SIZES_KEY`` metadata),
    each a whole number from 0 to the decoder grid's voxels. Raises CheckpointError."""
    raw = metadata.get(ONNX_SIZES_KEY)
    if raw is None:
        raise CheckpointError(f'{path}: no {ONNX_SIZES_KEY} metadata (a file exported by an older '
                              'version, with data-dependent shapes); export it again with '
                              'ssc_core.tools.export')
    try:
        sizes = json.loads(raw[:200])
    except ValueError:
        sizes = None
    fields = SelectionSizes._fields
    values = [sizes[f] for f in fields] if isinstance(sizes, dict) and sorted(sizes) == sorted(fields) else []
    voxels = input_shapes(preset)['fov_mask'][1] // preset.model.downsample_z
    if len(values) != len(fields) or not all(type(v) is int and 0 <= v <= voxels for v in values):
        raise CheckpointError(f'{path}: {ONNX_SIZES_KEY} must be {{"visible": n, "proposals": n}} '
                              f'with 0 <= n <= {voxels}, got {raw[:100]!r}')
    return SelectionSizes(*values)


class OnnxRuntimeBackend:
    """Runs an exported model with ONNX Runtime.

    Args:
        path: the .onnx file. device: 'cpu', or 'cuda'/'cuda:N' for TensorRT then CUDA.
        precision: 'fp32', or 'fp16' (TensorRT's fp16 mode).
        allow_fallback: when no GPU provider is usable, run on the CPU (with a warning) instead
            of failing.
    """

    name = 'onnxruntime'
    max_batch = 1  # exported for one frame

    def __init__(self, path, device='cpu', precision: str = 'fp32', allow_fallback: bool = False):
        import onnxruntime as ort
        self.path = path
        self.preset = read_preset(path)
        self.device = torch.device('cpu')  # inputs are handed over from host memory
        self.precision = precision
        wanted_gpu = str(device).startswith('cuda')
        available = ort.get_available_providers()
        gpu_index = int(str(device).split(':')[1]) if ':' in str(device) else 0
        providers = []
        if wanted_gpu:
            for name in GPU_PROVIDERS:
                if name in available:
                    options = {'device_id': gpu_index}
                    if name == GPU_PROVIDERS[0] and precision == 'fp16':
                        options['trt_fp16_enable'] = True
                    providers.append((name, options))
            if not providers and not allow_fallback:
                raise RuntimeError(f'device {device}: no GPU execution provider in this onnxruntime '
                                   f'(available: {", ".join(available)}); install onnxruntime-gpu or '
                                   'allow the CPU fallback')
        elif precision != 'fp32':
            raise ValueError(f'precision {precision}: onnxruntime on the CPU runs fp32 only')
        providers.append(CPU_PROVIDER)
        options = ort.SessionOptions()
        # No memory pattern planned over the whole graph: a full-size frame on the CPU at the
        # defaults' speed (7.8 s on 2 cores) with a 3.0 GB peak instead of 4.6 GB; without the
        # CPU arena as well 2.9 GB, but 8.9 s.
        options.enable_mem_pattern = False
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:
            raise CheckpointError(f'{path}: onnxruntime cannot load it ({type(e).__name__}: {e})') from None
        self.providers = self.session.get_providers()
        if wanted_gpu and self.providers[0] == CPU_PROVIDER:
            if not allow_fallback:
                raise RuntimeError(f'device {device}: onnxruntime could not start a GPU provider (CUDA or '
                                   'cuDNN missing?) and the CPU fallback is not allowed')
            log.warning('%s: no GPU provider usable, running on the CPU (fallback allowed)', path)
        self.outputs = [o.name for o in self.session.get_outputs()]
        self.output_shapes = output_shapes(self.preset)
        self.sizes = read_sizes(self.session.get_modelmeta().custom_metadata_map, self.preset, path)
        log.info('onnxruntime providers: %s', ', '.join(self.providers))
        if ORT_IMPORTED_FIRST:
            log.warning('onnxruntime was imported before ssc_core without %s=1: its telemetry to '
                        'Microsoft is on in this process', ORT_TELEMETRY_VARIABLE)

    def describe(self) -> str:
        return f'onnxruntime ({", ".join(self.providers)}, {self.precision})'

    def run(self, inputs, want_logits: bool = True):
        feed = to_numpy(inputs)
        expected = {i.name: i.shape for i in self.session.get_inputs()}
        for name, shape in expected.items():
            if list(feed[name].shape) != shape:
                raise ValueError(f'{name}: the ONNX model {self.path} takes shape {shape}, got '
                                 f'{list(feed[name].shape)} (exported models take one frame at a time)')
        names = ['labels', 'logits', 'selection_counts']   # logits also when not wanted: checked to be finite
        out = self.session.run(names, {k: feed[k] for k in expected})
        for name, value in zip(names, out, strict=True):
            if value.shape != self.output_shapes[name] or value.dtype != OUTPUT_TYPES[name]:
                raise RuntimeError(f'the ONNX model {self.path} returned {name} {value.dtype} '
                                   f'{list(value.shape)}, its preset needs '
                                   f'{np.dtype(OUTPUT_TYPES[name]).name} '
                                   f'{list(self.output_shapes[name])}')
        visible, proposals = (int(n) for n in out[2].max(0))
        if visible > self.sizes.visible:
            raise ValueError(f'camera: {visible} voxels of the decoder grid are in view, the ONNX model '
                             f'{self.path} takes at most {self.sizes.visible} (export it with '
                             f'--max-visible {visible} or more)')
        if proposals > self.sizes.proposals:
            raise ValueError(f'depth: {proposals} voxels hold a depth point, the ONNX model {self.path} '
                             f'takes at most {self.sizes.proposals} (export it with --max-proposals '
                             f'{proposals} or more)')
        logits = torch.from_numpy(out[1])
        check_finite(logits)
        return out[0], (logits if want_logits else None)
