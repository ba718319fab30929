"""Reading and writing checkpoints without running code from the file.

Two formats are read:

* the authors' (Lightning ``.ckpt`` with ``{"state_dict": {"model.<key>": tensor}}``, or a bare
  state dict written by ``torch.save``), read by a restricted unpickler that rebuilds tensors and
  plain containers and replaces known data classes (omegaconf, numpy, Lightning) by inert
  placeholders — nothing from the file is imported or called;
* ours (``.safetensors`` whose metadata holds the preset that rebuilds the network).
"""
import collections
import json
import os
import pickle
import struct
import zipfile
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from .model import Symphonies
from .presets import PRESETS, Preset

FORMAT = 'ssc_ros.checkpoint/1'
# The built-in model: the `small` preset trained on synthetic streets (scripts/train_builtin.sh).
BUILTIN_CHECKPOINT = Path(__file__).resolve().parent / 'weights' / 'small_synthetic.safetensors'
# Buffers of the authors' modules that are constants or unused here: checked, then dropped.
DERIVED_KEYS = ('decoder.image_grid', 'decoder.voxel_grid',
                'encoder.model.panoptic_head.criterion.empty_weight')


class CheckpointError(ValueError):
    """A checkpoint that cannot be read or does not fit the network."""


# --------------------------------------------------------------------------- restricted unpickling
class _Inert:
    """Placeholder for a data object of a class we do not import; keeps what it was given."""

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.__dict__['_args'] = args
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.__dict__['_state'] = state

    def __setitem__(self, key, value):
        self.__dict__.setdefault('_items', {})[key] = value

    def append(self, value):
        self.__dict__.setdefault('_list', []).append(value)

    def extend(self, values):
        self.__dict__.setdefault('_list', []).extend(values)


def _reconstruct(cls, base, state):
    """``copyreg._reconstructor`` for placeholder classes and plain containers only."""
    if isinstance(cls, type) and issubclass(cls, _Inert):
        return cls(state)
    if cls in _BUILTINS.values() and base in _BUILTINS.values():
        return base.__new__(cls) if state is None else base.__new__(cls, state)
    raise pickle.UnpicklingError(f'refusing to reconstruct {cls!r}')


def _inert_class(module: str, name: str) -> type:
    return type(name, (_Inert,), {'__module__': f'inert.{module}'})


# Packages whose classes only carry data in a training checkpoint (hyper-parameters, callback
# state, numpy scalars); their objects become inert placeholders.
_DATA_PACKAGES = ('omegaconf', 'numpy', 'lightning', 'pytorch_lightning', 'lightning_fabric',
                  'torchmetrics', 'pathlib', 'typing', 'enum', 'argparse', 'functools', 'datetime',
                  'hydra')
_BUILTINS = {'dict': dict, 'list': list, 'tuple': tuple, 'set': set, 'frozenset': frozenset,
             'int': int, 'float': float, 'str': str, 'bytes': bytes, 'bool': bool,
             'complex': complex, 'slice': slice, 'bytearray': bytearray, 'object': object}


def _rebuild_tensor(storage, storage_offset, size, stride, *unused):
    return torch.empty((0,), dtype=storage.dtype).set_(storage.untyped_storage(), storage_offset,
                                                       size, stride)


def _rebuild_parameter(data, requires_grad, backward_hooks, *unused):
    return data


class _StorageType:

    def __init__(self, dtype):
        self.dtype = dtype


class _SafeUnpickler(pickle.Unpickler):

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, path: Path):
        super().__init__(file)
        self.archive, self.prefix, self.path = archive, prefix, path

    def find_class(self, module, name):
        if module == 'collections' and name in ('OrderedDict', 'Counter', 'defaultdict', 'deque'):
            return getattr(collections, name)
        if module == 'copyreg' and name == '_reconstructor':
            return _reconstruct
        if module in ('builtins', '__builtin__') and name in _BUILTINS:
            return _BUILTINS[name]
        if module == 'torch._utils' and name == '_rebuild_tensor_v2':
            return _rebuild_tensor
        if module == 'torch._utils' and name in ('_rebuild_parameter',
                                                 '_rebuild_parameter_with_state'):
            return _rebuild_parameter
        if module == 'torch' and name.endswith('Storage'):
            dtype = {'float': torch.float32, 'double': torch.float64, 'half': torch.float16,
                     'long': torch.int64, 'int': torch.int32, 'short': torch.int16,
                     'char': torch.int8, 'byte': torch.uint8, 'bool': torch.bool,
                     'bfloat16': torch.bfloat16}.get(name[:-len('Storage')].lower())
            if dtype is not None:
                return _StorageType(dtype)
        if module == 'torch' and name in ('Size', 'device', 'dtype'):
            return {'Size': torch.Size, 'device': torch.device, 'dtype': _inert_class(module, name)}[name]
        if module.split('.')[0] in _DATA_PACKAGES or (module == 'torch' and name.startswith(
                ('float', 'int', 'bool', 'bfloat', 'uint', 'complex'))):
            return _inert_class(module, name)
        raise CheckpointError(
            f'{self.path}: refusing to load: the file refers to {module}.{name}, which could run '
            'code when unpickled (only tensors and plain data are read)')

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and pid and pid[0] == 'storage'):
            raise CheckpointError(f'{self.path}: unsupported persistent id {pid!r}')
        storage_type, key = pid[1], pid[2]
        if not isinstance(storage_type, _StorageType):
            raise CheckpointError(f'{self.path}: unsupported storage type {storage_type!r}')
        try:
            raw = self.archive.read(f'{self.prefix}data/{key}')
        except KeyError:
            raise CheckpointError(f'{self.path}: storage {key} is missing (truncated file?)') from None
        storage = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else torch.empty(
            0, dtype=torch.uint8)
        return _Typed(storage.untyped_storage(), storage_type.dtype)


class _Typed:
    """A storage with its element type, as ``_rebuild_tensor_v2`` expects."""

    def __init__(self, untyped, dtype):
        self._untyped, self.dtype = untyped, dtype

    def untyped_storage(self):
        return self._untyped


def _read_torch_zip(path: Path):
    try:
        archive = zipfile.ZipFile(path)
        names = archive.namelist()
    except (zipfile.BadZipFile, OSError) as e:
        raise CheckpointError(f'{path}: not a readable checkpoint ({e}); the file may be truncated '
                              'or corrupt') from None
    pkl = [n for n in names if n.endswith('data.pkl')]
    if len(pkl) != 1:
        raise CheckpointError(f'{path}: not a torch.save archive (expected one data.pkl, '
                              f'found {len(pkl)})')
    prefix = pkl[0][:-len('data.pkl')]
    try:
        with archive.open(pkl[0]) as f:
            return _SafeUnpickler(f, archive, prefix, path).load()
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, zipfile.BadZipFile, RuntimeError, ValueError,
            TypeError, struct.error) as e:
        raise CheckpointError(f'{path}: corrupt checkpoint ({type(e).__name__}: {e})') from None


def _is_safetensors(path: Path) -> bool:
    with open(path, 'rb') as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b'{'


# --------------------------------------------------------------------------------- public API
def read_state_dict(path) -> tuple[dict[str, torch.Tensor], Preset | None]:
    """Tensors of a checkpoint file (any supported format) and, for ours, its preset.

    Lightning checkpoints give their ``state_dict`` entry; keys are returned as stored.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f'{path}: no such checkpoint file')
    if _is_safetensors(path):
        try:
            state = load_file(str(path))
            with safe_open(str(path), 'pt') as f:
                meta = f.metadata() or {}
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f'{path}: corrupt or truncated safetensors file ({e})') from None
        preset = None
        if meta.get('format') == FORMAT:
            preset = Preset.from_dict(json.loads(meta['preset']))
        return state, preset
    obj = _read_torch_zip(path)
    preset = None
    if isinstance(obj, dict) and isinstance(obj.get('state_dict'), dict):
        hparams = obj.get('hyper_parameters')
        if isinstance(hparams, dict) and hparams.get('preset') in PRESETS:  # our training runs
            preset = PRESETS[hparams['preset']]
        obj = obj['state_dict']
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f'{path}: holds no state dict (expected a mapping of names to '
                              'tensors, or a Lightning checkpoint with "state_dict")')
    return dict(obj), preset


def _strip_prefix(state: dict, prefix: str = 'model.') -> dict:
    if state and all(k.startswith(prefix) for k in state):
        return {k[len(prefix):]: v for k, v in state.items()}
    return state


def infer_preset(state: dict) -> Preset | None:
    """The built-in preset whose shapes an authors'-layout state dict has, if any."""
    state = _strip_prefix(state)
    grid = state.get('decoder.image_grid')
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
    """Map an authors'- or our-layout state dict onto ``model`` strictly.

    Raises CheckpointError listing every missing, unexpected and mis-shaped key.
    """
    state = _strip_prefix(state)
    expected = model.state_dict()
    problems = []
    height, width = model.image_shape
    grid = state.pop('decoder.image_grid', None)
    if grid is not None and tuple(grid.shape) != (1, 2, height, width):
        problems.append(f'decoder.image_grid: checkpoint is for images {tuple(grid.shape[-2:])}, '
                        f'the network for {(height, width)}')
    voxel_grid = state.pop('decoder.voxel_grid', None)
    if voxel_grid is not None and tuple(voxel_grid.shape[1:]) != model.decoder.scene_shape:
        problems.append(f'decoder.voxel_grid: checkpoint grid {tuple(voxel_grid.shape[1:])}, '
                        f'network grid {model.decoder.scene_shape}')
    for key in DERIVED_KEYS[2:]:
        state.pop(key, None)
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    misshaped = [f'{k}: checkpoint {tuple(state[k].shape)}, network {tuple(v.shape)}'
                 for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing:
        problems.append(f'{len(missing)} missing keys: {", ".join(missing[:20])}'
                        + (' …' if len(missing) > 20 else ''))
    if unexpected:
        problems.append(f'{len(unexpected)} unexpected keys: {", ".join(unexpected[:20])}'
                        + (' …' if len(unexpected) > 20 else ''))
    if misshaped:
        problems.append(f'{len(misshaped)} mis-shaped keys: ' + '; '.join(misshaped[:20]))
    if problems:
        raise CheckpointError(f'{source} does not fit the network:\n  ' + '\n  '.join(problems))
    return state


def load_model(path, preset: Preset | str | None = None, device='cpu') -> tuple[Symphonies, Preset]:
    """Build the network a checkpoint was made for and load it strictly, in eval mode.

    Args:
        path: our ``.safetensors`` checkpoint, an authors' Lightning ``.ckpt`` or a bare state
            dict. preset: required to match when given; for authors' files it is inferred from
            the weights' shapes when omitted.
    """
    if isinstance(preset, str):
        from .presets import get_preset
        preset = get_preset(preset)
    state, stored = read_state_dict(path)
    chosen = stored or preset or infer_preset(state)
    if chosen is None:
        raise CheckpointError(f'{path}: cannot tell which preset the weights are for; pass one of '
                              f'{", ".join(PRESETS)}')
    if preset is not None and stored is not None and stored.model != preset.model:
        raise CheckpointError(f'{path}: checkpoint was made for preset {stored.name!r}, '
                              f'not {preset.name!r}')
    model = chosen.model.build()
    state = check_state_dict(model, state, str(path))
    model.load_state_dict(state, strict=True)
    return model.eval().to(device), chosen


def save_checkpoint(model: Symphonies, preset: Preset, path, half: bool = False) -> Path:
    """Write weights and preset to ``path`` (safetensors), atomically.

    ``half`` stores floating-point weights as float16 (half the size); loading casts them back.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: (v.half() if half and v.is_floating_point() else v).detach().cpu().contiguous()
               for k, v in model.state_dict().items()}
    tmp = path.with_name(path.name + '.tmp')
    save_file(tensors, str(tmp), metadata={'format': FORMAT, 'preset': json.dumps(preset.to_dict())})
    os.replace(tmp, path)
    return path
