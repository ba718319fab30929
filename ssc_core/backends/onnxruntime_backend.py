"""ONNX Runtime with TensorRT → CUDA → CPU execution providers, from a file made by
``python -m ssc_core.tools.export``."""
import json
import logging

import numpy as np
import torch

from ..checkpoint import CheckpointError
from ..presets import Preset
from .torch_backend import to_numpy

log = logging.getLogger('ssc_core.onnxruntime')
METADATA_KEY = 'ssc_ros.preset'
GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')
CPU_PROVIDER = 'CPUExecutionProvider'


def read_preset(path) -> Preset:
    """The preset stored in an exported model's metadata."""
    import onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:
        raise CheckpointError(f'{path}: not a readable ONNX model ({type(e).__name__}: {e})') from None
    meta = {p.key: p.value for p in model.metadata_props}
    if METADATA_KEY not in meta:
        raise CheckpointError(f'{path}: no {METADATA_KEY} metadata; export it with ssc_core.tools.export')
    return Preset.from_dict(json.loads(meta[METADATA_KEY]))


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
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as e:
            raise CheckpointError(f'{path}: onnxruntime cannot load it ({type(e).__name__}: {e})') from None
        self.providers = self.session.get_providers()
        if wanted_gpu and self.providers[0] == CPU_PROVIDER:
            if not allow_fallback:
                raise RuntimeError(f'device {device}: onnxruntime could not start a GPU provider (CUDA or '
                                   'cuDNN missing?) and the CPU fallback is not allowed')
            log.warning('%s: no GPU provider usable, running on the CPU (fallback allowed)', path)
        self.outputs = [o.name for o in self.session.get_outputs()]
        log.info('onnxruntime providers: %s', ', '.join(self.providers))

    def describe(self) -> str:
        return f'onnxruntime ({", ".join(self.providers)}, {self.precision})'

    def run(self, inputs, want_logits: bool = True):
        feed = to_numpy(inputs)
        expected = {i.name: i.shape for i in self.session.get_inputs()}
        for name, shape in expected.items():
            if list(feed[name].shape) != shape:
                raise ValueError(f'{name}: the ONNX model {self.path} takes shape {shape}, got '
                                 f'{list(feed[name].shape)} (exported models take one frame at a time)')
        names = ['labels', 'logits'] if want_logits else ['labels']
        out = self.session.run(names, {k: feed[k] for k in expected})
        labels = np.asarray(out[0], np.uint8)
        return labels, (torch.from_numpy(out[1]) if want_logits else None)
