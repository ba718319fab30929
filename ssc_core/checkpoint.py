"""Reading and writing checkpoints without running code from the file.

Two formats are read:

* the authors' (Lightning ``.ckpt`` with ``{"state_dict": {"model.<key>": tensor}}``, or a bare
  state dict written by ``torch.save``), read by PyTorch's weights-only unpickler behind the
  checks of :mod:`ssc_core.torch_archive` — nothing from the file is imported or called;
* ours (``.safetensors`` whose metadata holds the preset that rebuilds the network, validated
  before anything is built).

Every failure is a :class:`CheckpointError` naming the file and the reason, in one line (names
from the file quoted): a tensor that does not fit the network (missing, unexpected, mis-shaped,
of another kind of type, not finite, a negative BatchNorm variance), a preset that differs from
the one asked for, or a file that is refused. A file's tensors are checked against the network's
names and shapes (built on the ``meta`` device: no memory) before the network is built, so a
small file costs little memory whatever preset it names.
"""
import json
from collections import OrderedDict
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .files import atomic_path
from .model import Symphonies
from .presets import PRESETS, Preset
from .quoting import one_line, quote
from .torch_archive import ArchiveError, load_archive

FORMAT = 'ssc_ros.checkpoint/1'
# The built-in model: the `small` preset trained on synthetic streets (scripts/train_builtin.sh).
BUILTIN_CHECKPOINT = Path(__file__).resolve().parent / 'weights' / 'small_synthetic.safetensors'
# Buffers of the authors' modules that are constants here: their shapes are checked (they tell
# the image size and grid a checkpoint was trained for), then they are dropped.
IMAGE_GRID_KEY, VOXEL_GRID_KEY = 'decoder.image_grid', 'decoder.voxel_grid'
# The authors' training criterion's buffer: unused by the network, dropped.
UNUSED_KEYS = ('encoder.model.panoptic_head.criterion.empty_weight',)
RUNNING_VAR = 'running_var'   # BatchNorm's buffer of variances, never below 0


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the network; its message is one line."""

    def __init__(self, message: str):
        super().__init__(one_line(message))


# --------------------------------------------------------------------------------- reading
# Element types a checkpoint's tensors may have; a floating parameter needs a floating one, an
# integer buffer an integer one (see check_state_dict).
TENSOR_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64, torch.uint8,
                 torch.int8, torch.int16, torch.int32, torch.int64, torch.bool)
MAX_TENSORS = 100_000
PRESET_JSON_LIMIT = 64 * 1024
# The network's tensors may hold at most this many times the bytes of the file's distinct
# storages (float16 files: 2x); more means tensors sharing storage stand in for the weights.
MAX_WEIGHT_EXPANSION = 4
# Mappings a torch archive holds its tensors in (exact types: a file builds no subclass).
_MAPPINGS = (dict, OrderedDict)


def read_state_dict(path) -> tuple[dict[str, torch.Tensor], Preset | None]:
    """Tensors of a checkpoint file (any supported format) and, for ours, its preset.

    Lightning checkpoints give their ``state_dict`` entry, detectron2 checkpoints their ``model``
    entry; keys are returned as stored.
    Raises CheckpointError naming the file and the reason for anything else.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    try:
        if _is_safetensors(path):
            return _read_safetensors(path)
        return _read_torch_archive(path)
    except ArchiveError as e:
        raise CheckpointError(f'{path}: {e}') from None
    except OSError as e:
        raise CheckpointError(f'{path}: cannot read it ({e.strerror or e})') from None


def _is_safetensors(path: Path) -> bool:
    with open(path, 'rb') as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b'{'


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], Preset | None]:
    try:
        with safe_open(str(path), 'pt') as f:
            meta = f.metadata() or {}
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError, TypeError, MemoryError) as e:
        raise CheckpointError(f'{path}: corrupt or truncated safetensors file ({e})') from None
    for name, tensor in state.items():
        _check_dtype(path, name, tensor)
    if 'format' not in meta:
        return state, None
    if meta['format'] != FORMAT:
        raise CheckpointError(f'{path}: format {meta["format"][:40]!r} is not {FORMAT!r} (written '
                              'by another version?)')
    return state, preset_from_json(meta.get('preset', ''), path)


def preset_from_json(text: str, path) -> Preset:
    """The preset a file stores as JSON text (our checkpoints, exported ONNX models), validated.

    Raises CheckpointError naming ``path`` and what is wrong.
    """
    if len(text) > PRESET_JSON_LIMIT:
        raise CheckpointError(f'{path}: the stored preset is {len(text)} characters long, more '
                              f'than the {PRESET_JSON_LIMIT} a preset needs')
    try:
        data = json.loads(text)
    except RecursionError:
        raise CheckpointError(f'{path}: the stored preset is nested too deeply') from None
    except ValueError as e:
        raise CheckpointError(f'{path}: the stored preset is not valid JSON ({e})') from None
    try:
        return Preset.from_dict(data)
    except ValueError as e:  # names the field: "preset: model.backbone: expected ..."
        raise CheckpointError(f'{path}: stored {e}') from None


def _entry(obj, key: str):
    """``obj[key]`` when ``obj`` is a plain mapping holding a plain mapping there, else None
    (read with dict's own methods: never a method of an object the file built)."""
    if type(obj) in _MAPPINGS:
        value = dict.get(obj, key)
        if type(value) in _MAPPINGS:
            return value
    return None


def _read_torch_archive(path: Path) -> tuple[dict[str, torch.Tensor], Preset | None]:
    contents = load_archive(path)
    obj, preset = contents.obj, None
    if _entry(obj, 'state_dict') is not None:
        hparams = _entry(obj, 'hyper_parameters')
        name = dict.get(hparams, 'preset') if hparams is not None else None
        if type(name) is str and name in PRESETS:  # our training runs
            preset = PRESETS[name]
        obj = _entry(obj, 'state_dict')
    elif _entry(obj, 'model') is not None:  # detectron2 Checkpointer
        obj = _entry(obj, 'model')
    if type(obj) not in _MAPPINGS or not 0 < dict.__len__(obj) <= MAX_TENSORS \
            or not all(type(k) is str for k in dict.keys(obj)):
        raise CheckpointError(f'{path}: holds no state dict (expected a mapping of names to '
                              'tensors, a Lightning checkpoint with "state_dict" or a detectron2 one '
                              'with "model")')
    state = {}
    for name, tensor in dict.items(obj):
        state[name] = contents.check_tensor(name, tensor)
        _check_dtype(path, name, state[name])
    return state, preset


def _check_dtype(path: Path, name: str, tensor: torch.Tensor) -> None:
    if tensor.dtype not in TENSOR_DTYPES:
        raise CheckpointError(f'{path}: tensor {quote(name)} has type {tensor.dtype}, not one a '
                              'checkpoint of this network holds')


def _strip_prefix(state: dict, prefix: str = 'model.') -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def infer_preset(state: dict) -> Preset | None:
    """The built-in preset whose shapes an authors'-layout state dict has, if any."""
    state = _strip_prefix(state)
    grid = state.get(IMAGE_GRID_KEY)
    head = state.get('decoder.cls_head.2.weight')
    scene = state.get('decoder.scene_embed.weight')
    for preset in PRESETS.values():
        cfg = preset.model
        x, y, z = (s // cfg.volume_scale for s in cfg.scene_shape)
        if (head is not None and head.shape[0] == cfg.num_classes
                and (grid is None or tuple(grid.shape[-2:]) == cfg.image_shape)
                and (scene is None or tuple(scene.shape) == (x * y * z // cfg.downsample_z, cfg.embed_dims))):
            return preset
    return None


def check_state_dict(model: Symphonies, state: dict, source: str) -> dict:
    """Map an authors'- or our-layout state dict onto ``model`` strictly. Only the network's
    names, shapes and types are read: ``model`` may live on the ``meta`` device.

    Raises CheckpointError listing every missing, unexpected and mis-shaped key, every tensor
    whose type is of another kind than the network's (a floating parameter stored as int8 or
    bool), every floating tensor with NaN or inf values (also after the cast to the network's
    type) and every BatchNorm running variance below 0 (it makes the network compute NaN).
    """
    state = _strip_prefix(state)
    expected = model.state_dict()
    problems = []
    height, width = model.image_shape
    grid = state.pop(IMAGE_GRID_KEY, None)
    if grid is not None and tuple(grid.shape) != (1, 2, height, width):
        problems.append(f'{IMAGE_GRID_KEY}: checkpoint is for images {tuple(grid.shape[-2:])}, '
                        f'the network for {(height, width)}')
    voxel_grid = state.pop(VOXEL_GRID_KEY, None)
    if voxel_grid is not None and tuple(voxel_grid.shape[1:]) != model.decoder.scene_shape:
        problems.append(f'{VOXEL_GRID_KEY}: checkpoint grid {tuple(voxel_grid.shape[1:])}, '
                        f'network grid {model.decoder.scene_shape}')
    for key in UNUSED_KEYS:
        state.pop(key, None)
    missing = [k for k in expected if k not in state]
    unexpected = [quote(k) for k in state if k not in expected]
    fitting = [k for k in expected if k in state and state[k].shape == expected[k].shape]
    misshaped = [f'{k}: checkpoint {tuple(state[k].shape)}, network {tuple(v.shape)}'
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    mistyped = [f'{k}: checkpoint {state[k].dtype}, network {expected[k].dtype}'
                for k in fitting if _type_kind(state[k].dtype) != _type_kind(expected[k].dtype)]
    non_finite = [k for k in fitting if expected[k].is_floating_point()
                  and state[k].is_floating_point()
                  and not torch.isfinite(state[k].to(expected[k].dtype)).all()]
    negative = [k for k in fitting if k.endswith(RUNNING_VAR) and state[k].is_floating_point()
                and bool((state[k] < 0).any())]
    for what, keys in (('missing keys', missing), ('unexpected keys', unexpected),
                       ('mis-shaped keys', misshaped), ('keys of another type', mistyped),
                       ('keys with NaN or inf values', non_finite),
                       ('BatchNorm running variances below 0', negative)):
        if keys:
            problems.append(f'{len(keys)} {what}: {", ".join(keys[:20])}'
                            + (' …' if len(keys) > 20 else ''))
    if problems:
        raise CheckpointError(f'{source} does not fit the network: ' + '; '.join(problems))
    return state


def _type_kind(dtype: torch.dtype) -> str:
    return 'floating' if dtype.is_floating_point else 'bool' if dtype == torch.bool else 'integer'


def load_model(path, preset: Preset | str | None = None, device='cpu') -> tuple[Symphonies, Preset]:
    """Build the network a checkpoint was made for and load it strictly, in eval mode.

    Args:
        path: our ``.safetensors`` checkpoint, an authors' Lightning ``.ckpt`` or a bare state
            dict. preset: required to match when given (a stored preset must equal it in the
            network, class names and geometry); for authors' files it is inferred from the
            weights' shapes when omitted.
    """
    if isinstance(preset, str):
        from .presets import get_preset
        preset = get_preset(preset)
    state, stored = read_state_dict(path)
    chosen = stored or preset or infer_preset(state)
    if chosen is None:
        raise CheckpointError(f'{path}: cannot tell which preset the weights are for; pass one of '
                              f'{", ".join(PRESETS)}')
    if preset is not None and stored is not None and stored.differences(preset):
        raise CheckpointError(f'{path}: checkpoint was made for preset {stored.name!r}, not '
                              f'{preset.name!r} (they differ in '
                              f'{", ".join(stored.differences(preset))})')
    try:
        with torch.device('meta'):   # names, shapes and types only: no memory, no initialisation
            layout = chosen.model.build()
    except (ValueError, RuntimeError) as e:
        raise CheckpointError(f'{path}: preset {chosen.name!r} builds no network ({e})') from None
    state = check_state_dict(layout, state, str(path))
    _check_storage(path, state, layout)
    model = chosen.model.build()
    model.load_state_dict(state, strict=True)
    return model.eval().to(device), chosen


def _check_storage(path, state: dict[str, torch.Tensor], layout: Symphonies) -> None:
    """CheckpointError when the network the tensors fit needs far more memory than their
    storages hold (tensors sharing one record stand in for the weights of a large preset)."""
    held = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in state.values()}
    needed = sum(t.numel() * t.element_size() for t in layout.state_dict().values())
    if needed > MAX_WEIGHT_EXPANSION * sum(held.values()) + 2 ** 20:
        raise CheckpointError(f'{path}: its tensors share {sum(held.values())} bytes of storage '
                              f'for a network of {needed} bytes (at most {MAX_WEIGHT_EXPANSION}x '
                              'is read: a file this small does not hold these weights)')


def save_checkpoint(model: Symphonies, preset: Preset, path, half: bool = False) -> Path:
    """Write weights and preset to ``path`` (safetensors), atomically.

    ``half`` stores floating-point weights as float16 (half the size); loading casts them back.
    """
    path = Path(path)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={'format': FORMAT, 'preset': json.dumps(preset.to_dict())})
    return path
