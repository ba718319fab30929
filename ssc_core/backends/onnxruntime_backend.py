"""ONNX Runtime with TensorRT → CUDA → CPU execution providers, from a file made by
``python -m ssc_core.tools.export``."""
import json
import logging

import numpy as np
import torch

from ..checkpoint import CheckpointError, preset_from_json
from ..model.decoder import SelectionSizes
from ..presets import ONNX_METADATA_KEY, ONNX_SIZES_KEY, Preset
from .torch_backend import to_numpy

log = logging.getLogger('ssc_core.onnxruntime')
GPU_PROVIDERS = ('TensorrtExecutionProvider', 'CUDAExecutionProvider')
CPU_PROVIDER = 'CPUExecutionProvider'


def read_preset(path) -> Preset:
    """The preset stored in an exported model's metadata, checked against the model's declared
    inputs before any session is created.

    Raises CheckpointError for a file that is not one of our self-contained exports.
    """
    import onnx
    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as e:  # protobuf and onnx raise many types for a bad file
        raise CheckpointError(f'{path}: not a readable ONNX model ({type(e).__name__}: {e})') from None
    meta = {p.key: p.value for p in model.metadata_props}
    if ONNX_METADATA_KEY not in meta:
        raise CheckpointError(f'{path}: no {ONNX_METADATA_KEY} metadata; '
                              'export it with ssc_core.tools.export')
    preset = preset_from_json(meta[ONNX_METADATA_KEY], path)
    external = _external_tensor(model)
    if external is not None:
        raise CheckpointError(f'{path}: tensor {external[:100]} keeps its data in another file; '
                              'only self-contained models (as ssc_core.tools.export writes) are read')
    expected = input_shapes(preset)
    initializers = {t.name for t in model.graph.initializer}
    declared = {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        dims = value.type.tensor_type.shape.dim
        declared[value.name[:100]] = [d.dim_value if d.HasField('dim_value') else d.dim_param[:40]
                                      for d in dims]
    if declared != expected:
        raise CheckpointError(f'{path}: the model takes inputs {declared}, its preset '
                              f'{preset.name!r} needs {expected}')
    return preset


def input_shapes(preset: Preset) -> dict[str, list[int]]:
    """Shapes of an exported model's inputs (one frame, see ``Predictor.prepare``)."""
    height, width = preset.model.image_shape
    points = _projection_points(preset)
    return {'img': [1, 3, height, width], 'depth': [1, height, width], 'cam_K': [1, 3, 3],
            'cam_pose': [1, 4, 4], 'voxel_origin': [1, 3], 'projected_pix': [1, points, 2],
            'fov_mask': [1, points]}


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
    voxels = _projection_points(preset) // preset.model.downsample_z
    if len(values) != len(fields) or not all(type(v) is int and 0 <= v <= voxels for v in values):
        raise CheckpointError(f'{path}: {ONNX_SIZES_KEY} must be {{"visible": n, "proposals": n}} '
                              f'with 0 <= n <= {voxels}, got {raw[:100]!r}')
    return SelectionSizes(*values)


def _projection_points(preset: Preset) -> int:
    """Voxels of the grid the network's projection input covers."""
    cfg = preset.model
    points = 1
    for size in cfg.scene_shape:
        points *= size // cfg.volume_scale
    return points


def _external_tensor(model) -> str | None:
    """Name of a tensor whose data lives outside the file (graphs, subgraphs, functions)."""
    import onnx
    graphs = [model.graph]
    nodes = [n for f in model.functions for n in f.node]
    while graphs or nodes:
        if graphs:
            graph = graphs.pop()
            tensors = list(graph.initializer) + [s.values for s in graph.sparse_initializer]
            nodes.extend(graph.node)
        else:
            attributes = nodes.pop().attribute
            tensors = [a.t for a in attributes if a.HasField('t')]
            tensors += [t for a in attributes for t in a.tensors]
            graphs += [a.g for a in attributes if a.HasField('g')]
            graphs += [g for a in attributes for g in a.graphs]
        for tensor in tensors:
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                return tensor.name
    return None


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
        self.sizes = read_sizes(self.session.get_modelmeta().custom_metadata_map, self.preset, path)
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
        names = ['labels', 'selection_counts'] + (['logits'] if want_logits else [])
        out = self.session.run(names, {k: feed[k] for k in expected})
        visible, proposals = (int(n) for n in out[1].max(0))
        if visible > self.sizes.visible:
            raise ValueError(f'camera: {visible} voxels of the decoder grid are in view, the ONNX model '
                             f'{self.path} takes at most {self.sizes.visible} (export it with '
                             f'--max-visible {visible} or more)')
        if proposals > self.sizes.proposals:
            raise ValueError(f'depth: {proposals} voxels hold a depth point, the ONNX model {self.path} '
                             f'takes at most {self.sizes.proposals} (export it with --max-proposals '
                             f'{proposals} or more)')
        labels = np.asarray(out[0], np.uint8)
        return labels, (torch.from_numpy(out[2]) if want_logits else None)
