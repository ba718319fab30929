"""What an ``.onnx`` file must be before ONNX Runtime opens it: one that
``python -m ssc_core.tools.export`` could have written for the preset in its metadata.

Checked on the file, before any session exists: the preset (schema and plausibility), every
tensor's data inside the file (initializers, sparse values and indices, attributes of every
kind, subgraphs, functions), the inputs and outputs the preset implies (names, element types,
shapes), only the operators the exporter writes (:data:`EXPORTED_OPS`: no ``Loop``, ``If``,
``Scan`` or custom domains), and shapes: every tensor's shape follows from the inputs' and is
bounded, except downstream of :data:`DATA_DEPENDENT_OPS`.
"""
import numpy as np

from ..checkpoint import CheckpointError, preset_from_json
from ..presets import ONNX_METADATA_KEY, Preset
from ..quoting import quote

EXPORTED_OPS = frozenset({
    'Add', 'And', 'ArgMax', 'AveragePool', 'Cast', 'Clip', 'Concat', 'ConstantOfShape', 'Conv', 'CumSum',
    'Cos', 'Div', 'Expand', 'Gather', 'GatherElements', 'GatherND', 'Gelu', 'Gemm', 'Greater',
    'GreaterOrEqual', 'GridSample', 'InstanceNormalization', 'IsInf', 'IsNaN',
    'LayerNormalization', 'Less', 'MatMul', 'MaxPool', 'Mul', 'Neg', 'Not', 'Pad',
    'ReduceMax', 'ReduceMean', 'ReduceMin', 'ReduceSum', 'Relu', 'Reshape', 'ScatterElements',
    'ScatterND', 'Shape', 'Sin', 'Slice', 'Softmax', 'Split', 'Squeeze', 'Sub', 'Transpose',
    'Unsqueeze', 'Where'})
"""Operator types (default ONNX domain) the export tool writes; a file with any other is refused.
``test_onnx`` exports the small network and checks that this list holds all its operators:
change it together with the exporter."""

DATA_DEPENDENT_OPS = frozenset()
"""Of :data:`EXPORTED_OPS`, those whose output shape depends on input values: none (the voxel
sets in view and with depth are taken at sizes fixed at export). Tensors downstream of such an
operator may have shapes shape inference cannot know; every other tensor's shape must be known
and at most :data:`MAX_TENSOR_RATIO` x the logits'."""

MAX_TENSOR_RATIO = 16
"""The most elements any tensor of the graph may have, in units of the logits' elements (the
exported networks' largest tensors are the logits)."""

INPUT_TYPES = {'img': np.float32, 'depth': np.float32, 'cam_K': np.float32,
               'cam_pose': np.float32, 'voxel_origin': np.float32, 'projected_pix': np.int64,
               'fov_mask': np.bool_}
"""Element types of the inputs, as :func:`~ssc_core.frame_inputs.frame_inputs` makes them."""

OUTPUT_NAMES = ('labels', 'logits', 'selection_counts')


def input_shapes(preset: Preset) -> dict[str, list[int]]:
    """Shapes of an exported model's inputs (one frame, see ``Predictor.prepare``)."""
    cfg = preset.model
    height, width = cfg.image_shape
    points = 1
    for size in cfg.scene_shape:
        points *= size // cfg.volume_scale
    return {'img': [1, 3, height, width], 'depth': [1, height, width], 'cam_K': [1, 3, 3],
            'cam_pose': [1, 4, 4], 'voxel_origin': [1, 3], 'projected_pix': [1, points, 2],
            'fov_mask': [1, points]}


def output_shapes(preset: Preset) -> dict[str, tuple[int, ...]]:
    """Shapes of an exported model's outputs: labels (1, X, Y, Z), logits (1, C, X, Y, Z) and
    selection_counts (1, 2) (the frame's voxels in view and with depth)."""
    grid = tuple(preset.model.scene_shape)
    return {'labels': (1, *grid), 'logits': (1, preset.model.num_classes, *grid), 'selection_counts': (1, 2)}


OUTPUT_TYPES = {'labels': np.uint8, 'logits': np.float32, 'selection_counts': np.int64}


def read_preset(path) -> Preset:
    """The preset stored in an exported model's metadata, after checking the whole file against
    it (see the module's description).

    Raises CheckpointError naming the file and what is wrong.
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
        raise CheckpointError(f'{path}: tensor {quote(external)} keeps its data in another file; '
                              'only self-contained models (as ssc_core.tools.export writes) are read')
    problem = (_check_inputs(model, preset) or _check_outputs(model, preset)
               or _check_operators(model) or _check_shapes(model, preset))
    if problem:
        raise CheckpointError(f'{path}: {problem}')
    return preset


def _external_tensor(model) -> str | None:
    """Name of a tensor anywhere in the model whose data lives outside the file."""
    from onnx import TensorProto
    stack = [model]
    while stack:
        message = stack.pop()
        if isinstance(message, TensorProto):   # holds no other tensor; its data is not walked
            if message.data_location == TensorProto.EXTERNAL or len(message.external_data):
                return message.name or '(unnamed)'
            continue
        for field, value in message.ListFields():
            if field.message_type is None:
                continue
            if hasattr(value, 'DESCRIPTOR'):
                stack.append(value)
            else:   # a repeated field of messages
                stack.extend(value)
    return None


def _value_info(value) -> tuple[int, list]:
    """(element type, dims: ints where known, else the symbol or None) of a ValueInfoProto."""
    tensor = value.type.tensor_type
    dims = [d.dim_value if d.HasField('dim_value') else (d.dim_param[:40] or None)
            for d in tensor.shape.dim] if tensor.HasField('shape') else None
    return tensor.elem_type, dims


def _type_name(elem_type: int) -> str:
    from onnx import TensorProto
    return TensorProto.DataType.Name(elem_type) if elem_type in TensorProto.DataType.values() \
        else str(elem_type)


def _check_inputs(model, preset: Preset) -> str | None:
    from onnx.helper import np_dtype_to_tensor_dtype
    initializers = {t.name for t in model.graph.initializer}
    declared, types = {}, {}
    for value in model.graph.input:
        if value.name in initializers:
            continue
        types[value.name], declared[value.name] = _value_info(value)
    expected = input_shapes(preset)
    if declared != expected:
        shown = {name[:40]: dims for name, dims in declared.items()}   # repr quotes the names
        return f'the model takes inputs {shown}, its preset {preset.name!r} needs {expected}'
    for name, dtype in INPUT_TYPES.items():
        if types[name] != np_dtype_to_tensor_dtype(np.dtype(dtype)):
            return (f'input {name} is declared {_type_name(types[name])}, the network takes '
                    f'{np.dtype(dtype).name}')
    return None


def _check_outputs(model, preset: Preset) -> str | None:
    from onnx.helper import np_dtype_to_tensor_dtype
    names = [o.name for o in model.graph.output]
    if names != list(OUTPUT_NAMES):
        return (f'the model gives outputs {[n[:40] for n in names[:10]]}, an export gives '
                f'{list(OUTPUT_NAMES)}')
    shapes = output_shapes(preset)
    for value in model.graph.output:
        elem_type, dims = _value_info(value)
        wanted = np_dtype_to_tensor_dtype(np.dtype(OUTPUT_TYPES[value.name]))
        if elem_type != wanted or dims != list(shapes[value.name]):
            return (f'output {value.name} is declared {_type_name(elem_type)} {dims}, its preset '
                    f'{preset.name!r} needs {_type_name(wanted)} {list(shapes[value.name])}')
    return None


def _check_operators(model) -> str | None:
    if len(model.functions):
        return f'the model defines functions ({quote(model.functions[0].name, 40)}); an export has none'
    strangers = sorted({quote(f'{n.domain}.{n.op_type}' if n.domain not in ('', 'ai.onnx')
                              else n.op_type, 60)
                        for n in model.graph.node
                        if n.domain not in ('', 'ai.onnx') or n.op_type not in EXPORTED_OPS})
    if strangers:
        return (f'the model uses operators an export never holds: {", ".join(strangers[:10])} '
                '(only those of ssc_core.backends.onnx_model.EXPORTED_OPS are run)')
    return None


def _check_shapes(model, preset: Preset) -> str | None:
    """Every tensor's shape known and bounded, but downstream of a data-dependent operator."""
    from onnx import shape_inference
    try:
        inferred = shape_inference.infer_shapes(_without_weights(model), data_prop=True)
    except Exception as e:  # onnx raises several types for a malformed graph
        return f'shape inference fails on the graph ({type(e).__name__}: {str(e)[:200]})'
    shapes = {v.name: _value_info(v)[1] for v in
              list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output)}
    shapes.update({t.name: list(t.dims) for t in model.graph.initializer})
    dependent = _downstream(model.graph, DATA_DEPENDENT_OPS)
    limit = MAX_TENSOR_RATIO * int(np.prod(output_shapes(preset)['logits']))
    for node in model.graph.node:
        for name in filter(None, node.output):
            dims = shapes.get(name)
            if dims is None or not all(isinstance(d, int) for d in dims):
                if name not in dependent:
                    return (f'tensor {quote(name, 60)} ({node.op_type}) has a shape that depends on '
                            'input values; an export sizes its tensors from the preset')
            elif int(np.prod(dims, dtype=np.float64)) > limit:
                return (f'tensor {quote(name, 60)} ({node.op_type}) has shape {dims}, more than the '
                        f'{limit} elements an export of preset {preset.name!r} needs')
    return None


def _without_weights(model):
    """A copy of the model for shape inference: large initializers become typed inputs."""
    import onnx
    from onnx import helper
    graph = model.graph
    inputs = {v.name for v in graph.input}
    small = [t for t in graph.initializer if np.prod(t.dims, dtype=np.float64) <= 64]
    large = [helper.make_tensor_value_info(t.name, t.data_type, list(t.dims))
             for t in graph.initializer
             if np.prod(t.dims, dtype=np.float64) > 64 and t.name not in inputs]
    copy = helper.make_graph(list(graph.node), graph.name, list(graph.input) + large,
                             list(graph.output), initializer=small,
                             sparse_initializer=list(graph.sparse_initializer))
    return helper.make_model(copy, opset_imports=list(model.opset_import),
                             ir_version=model.ir_version or onnx.IR_VERSION)


def _downstream(graph, ops: frozenset[str]) -> set[str]:
    """Names of the tensors computed from an output of a node in ``ops``."""
    reached: set[str] = set()
    for node in graph.node:   # nodes are in topological order (the ONNX checker's rule)
        if node.op_type in ops or any(name in reached for name in node.input):
            reached.update(node.output)
    return reached
