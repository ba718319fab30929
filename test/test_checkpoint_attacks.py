"""Hostile weights files (issue 13): every class of attack is refused with one CheckpointError
that names the file, runs no code, opens no socket, leaves the process's classes unchanged and
stays within bounded memory.

All files are loaded by one child process (so a crash or a memory peak shows in its exit status
and its peak RSS) through the convert CLI's ``main`` (``load_model``, then one line on a
CheckpointError) or ``Predictor.from_checkpoint`` for .onnx files; a loopback HTTP server
stands in for the model hub (HF_ENDPOINT) and records every request. The files are small:
payloads that expand compress to a few KB.
"""
import http.server
import io
import json
import os
import re
import struct
import subprocess
import sys
import threading
import zipfile
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from safetensors.torch import save_file

from ssc_core.checkpoint import FORMAT, load_model, save_checkpoint
from ssc_core.presets import SMALL

REPO = Path(__file__).resolve().parents[1]

# --------------------------------------------------------------------------- pickle opcodes
PROTO, STOP, MARK, TUPLE, TUPLE1, TUPLE2 = b'\x80\x02', b'.', b'(', b't', b'\x85', b'\x86'
REDUCE, BUILD, EMPTY_DICT, EMPTY_LIST, EMPTY_TUPLE = b'R', b'b', b'}', b']', b')'
SETITEM, SETITEMS, APPEND, NONE, NEWFALSE, BINPERSID = b's', b'u', b'a', b'N', b'\x89', b'Q'


def op_global(module: str, name: str) -> bytes:
    return b'c' + f'{module}\n{name}\n'.encode()


def op_str(text: str) -> bytes:
    data = text.encode()
    return b'X' + struct.pack('<I', len(data)) + data


def op_int(value: int) -> bytes:
    return b'J' + struct.pack('<i', value)


def op_put(index: int) -> bytes:
    return b'r' + struct.pack('<I', index)


def op_get(index: int) -> bytes:
    return b'j' + struct.pack('<I', index)


def op_tuple(values) -> bytes:
    return MARK + b''.join(op_int(v) for v in values) + TUPLE


def op_tensor(key: str, numel: int, size, stride=None, storage: str = 'FloatStorage') -> bytes:
    """``torch._utils._rebuild_tensor_v2`` of a tensor (contiguous unless ``stride`` is given)
    over storage record ``key``."""
    if stride is None:
        stride = [1] * len(size)
        for i in range(len(size) - 2, -1, -1):
            stride[i] = stride[i + 1] * size[i + 1]
    pid = MARK + op_str('storage') + op_global('torch', storage) + op_str(key) + op_str('cpu') \
        + op_int(numel) + TUPLE + BINPERSID
    return (op_global('torch._utils', '_rebuild_tensor_v2') + MARK + pid + op_int(0)
            + op_tuple(size) + op_tuple(stride) + NEWFALSE
            + op_global('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE + TUPLE + REDUCE)


def op_dict(items: dict[str, bytes]) -> bytes:
    return EMPTY_DICT + MARK + b''.join(op_str(k) + v for k, v in items.items()) + SETITEMS


def write_archive(path: Path, pickle_bytes: bytes, records: dict[str, bytes] | None = None,
                  method: int = zipfile.ZIP_DEFLATED,
                  record_method: int = zipfile.ZIP_DEFLATED) -> Path:
    """A torch.save-layout zip: archive/data.pkl (+ archive/data/<key> records)."""
    with zipfile.ZipFile(path, 'w', compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr('archive/data.pkl', pickle_bytes, compress_type=method)
        archive.writestr('archive/byteorder', 'little')
        archive.writestr('archive/version', '3\n')
        for key, data in (records or {}).items():
            archive.writestr(f'archive/data/{key}', data, compress_type=record_method)
    return path


def write_preset_file(path: Path, preset_json: str) -> Path:
    save_file({'x': torch.zeros(1)}, str(path), metadata={'format': FORMAT, 'preset': preset_json})
    return path


def preset_variant(change) -> str:
    data = SMALL.to_dict()
    change(data)
    return json.dumps(data)


def patch_declared_size(path: Path, member: str, size: int) -> None:
    """Make the zip's local and central headers claim ``size`` uncompressed bytes for ``member``."""
    data = bytearray(path.read_bytes())
    name = member.encode()
    for signature, size_offset in ((b'PK\x03\x04', 22), (b'PK\x01\x02', 24)):
        name_offset = 30 if signature == b'PK\x03\x04' else 46
        start = 0
        while (start := data.find(signature, start)) >= 0:
            if data[start + name_offset:start + name_offset + len(name)] == name:
                data[start + size_offset:start + size_offset + 4] = struct.pack('<I', size)
            start += 4
    path.write_bytes(bytes(data))


def onnx_file(path: Path, preset_json: str, external: str | None = None) -> Path:
    """A one-node model with ``preset_json`` as its metadata (and, with ``external``, a weight
    whose data the file says lives at that path)."""
    import onnx
    from onnx import TensorProto, helper
    x = helper.make_tensor_value_info('img', TensorProto.FLOAT, [1, 3, 8, 8])
    y = helper.make_tensor_value_info('labels', TensorProto.FLOAT, [1, 3, 8, 8])
    weight = helper.make_tensor('w', TensorProto.FLOAT, [1], [1.0])
    if external:
        weight.ClearField('float_data')
        weight.data_location = TensorProto.EXTERNAL
        entry = weight.external_data.add()
        entry.key, entry.value = 'location', external
    graph = helper.make_graph([helper.make_node('Mul', ['img', 'w'], ['labels'])], 'g', [x], [y],
                              initializer=[weight])
    model = helper.make_model(graph)
    entry = model.metadata_props.add()
    entry.key, entry.value = 'ssc_ros.preset', preset_json
    onnx.save_model(model, str(path))
    return path


class RunsCode:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f'touch {self.marker}',)


# --------------------------------------------------------------------------- the attacks
# name -> (issue item, builder(directory) -> path, what the message says, load arguments)
ATTACKS = {}


def attack(name: str, item: int, match: str, **load_args):
    def register(builder):
        ATTACKS[name] = (item, builder, match, load_args)
        return builder
    return register


def _presets():
    def register(name, change, match):
        attack(name, 6, match)(lambda d: write_preset_file(d / f'{name}.safetensors',
                                                           preset_variant(change)))
    register('preset_huge_scene', lambda p: p['model'].update(scene_shape=[10 ** 5] * 3),
             r'model.scene_shape: expected an integer in \[1, 1024\], got 100000')
    register('preset_huge_image', lambda p: p['model'].update(image_shape=[10 ** 6] * 2),
             r'model.image_shape: expected an integer in \[32, 4096\]')
    register('preset_many_queries', lambda p: p['model'].update(num_queries=10 ** 6),
             r'model.num_queries: expected an integer in \[1, 1000\]')
    register('preset_many_layers', lambda p: p['model'].update(num_layers=20000),
             r'model.num_layers: expected an integer in \[1, 12\]')
    register('preset_missing_key', lambda p: p.pop('cam_K'),
             r'stored preset: missing keys \[cam_K\], unexpected keys \[\]')
    register('preset_extra_key', lambda p: p['model'].update(evil=1),
             r"model: missing keys \[\], unexpected keys \['evil'\]")
    register('preset_bool_as_int', lambda p: p['model'].update(embed_dims=True),
             r'model.embed_dims: expected an integer .* got True')
    register('preset_nan_geometry', lambda p: p.update(voxel_origin=[float('nan'), 0, 0]),
             r'voxel_origin: expected a finite number')
    register('preset_class_names_short', lambda p: p.update(class_names=['a', 'b']),
             r'class_names: expected 20 distinct names')
    register('backbone_hf_hub', lambda p: p['model'].update(backbone='hf-hub:someone/evil-backbone'),
             r"model.backbone: expected one of resnet10t, .*got 'hf-hub:someone/evil-backbone'")


_presets()


@attack('backbone_local_dir', 1, r"model.backbone: expected one of .*got 'local-dir:")
def _(d):
    (d / 'config_dir').mkdir()
    (d / 'config_dir' / 'config.json').write_text('{"architecture": "resnet50"}')
    return write_preset_file(d / 'local_dir.safetensors', preset_variant(
        lambda p: p['model'].update(backbone=f'local-dir:{d / "config_dir"}')))


@attack('preset_bad_json', 6, r'stored preset is not valid JSON \(Expecting value')
def _(d):
    return write_preset_file(d / 'bad_json.safetensors', '{"name": ')


@attack('preset_deep_json', 6, r'the stored preset is nested too deeply')
def _(d):
    return write_preset_file(d / 'deep_json.safetensors', '[' * 50000)


@attack('preset_swapped_class_names', 6, r"made for preset 'small', not 'small' \(they differ in "
        r"class_names\)", preset='small')
def _(d):
    names = list(SMALL.class_names)
    names[1], names[9] = names[9], names[1]
    return write_preset_file(d / 'swapped.safetensors',
                             preset_variant(lambda p: p.update(class_names=names)))


@attack('onnx_hub_backbone', 1, r'model.backbone: expected one of', backend='onnxruntime')
def _(d):
    return onnx_file(d / 'hub.onnx', preset_variant(
        lambda p: p['model'].update(backbone='hf-hub:someone/evil-backbone')))


@attack('onnx_input_shapes', 6, r"the model takes inputs \{'img': \[1, 3, 8, 8\]\}, its preset "
        r"'small' needs", backend='onnxruntime')
def _(d):
    return onnx_file(d / 'shapes.onnx', json.dumps(SMALL.to_dict()))


@attack('onnx_external_data', 1, r'tensor w keeps its data in another file', backend='onnxruntime')
def _(d):
    return onnx_file(d / 'external.onnx', json.dumps(SMALL.to_dict()), external='/etc/passwd')


def nested_calls(module: str, name: str, base: bytes, level: bytes, depth: int) -> bytes:
    """``f(f(...f(base)...))`` ``depth`` deep: the callable is memoised once and fetched per level
    (freeing 200,000 nested slices or deques overflows the C stack)."""
    return (PROTO + op_global(module, name) + b'q\x00' + b'h\x00' * depth + base
            + level * depth + STOP)


@attack('nested_slices', 2, r"refers to 'builtins.slice', which is not among the names")
def _(d):
    return write_archive(d / 'slices.ckpt', nested_calls('builtins', 'slice', NONE,
                                                         TUPLE1 + REDUCE, 200_000),
                         method=zipfile.ZIP_STORED)


@attack('nested_deques', 2, r"refers to 'collections.deque', which is not among the names")
def _(d):
    return write_archive(d / 'deques.ckpt', nested_calls('collections', 'deque', EMPTY_TUPLE,
                                                         TUPLE1 + TUPLE1 + REDUCE, 200_000),
                         method=zipfile.ZIP_STORED)


@attack('nested_tuple_as_key', 2, r'a tuple nested 33 deep')
def _(d):
    # torch's own weights-only unpickler hashes this key recursively in C and crashes.
    key = NONE + TUPLE1 * 10 ** 6
    return write_archive(d / 'tuple_key.ckpt', PROTO + EMPTY_DICT + key + NONE + SETITEM + STOP)


@attack('tuple_hash_bomb', 5, r'expanding to \d+ elements')
def _(d):
    # t[i+1] = (t[i], t[i]): 60 levels of sharing make hashing t[60] take 2**60 steps.
    body = NONE + TUPLE1 + op_put(0)
    for i in range(60):
        body += op_get(i) + op_get(i) + TUPLE2 + op_put(i + 1)
    return write_archive(d / 'hash_bomb.ckpt', PROTO + EMPTY_DICT + body + NONE + SETITEM + STOP)


@attack('empty_storage_under_tensor', 3, r'resize storage that is not resizable')
def _(d):
    pickle_bytes = PROTO + op_dict({'decoder.cls_head.2.bias': op_tensor('0', 0, [10 ** 6])}) + STOP
    return write_archive(d / 'empty_storage.ckpt', pickle_bytes, {'0': b''})


@attack('storage_smaller_than_declared', 3,
        r"storage '0': the archive record holds 0 bytes, the pickle declares 4000000")
def _(d):
    pickle_bytes = PROTO + op_dict({'w': op_tensor('0', 10 ** 6, [10 ** 6])}) + STOP
    return write_archive(d / 'short_storage.ckpt', pickle_bytes, {'0': b''})


@attack('counter_class_state', 4, r'sets the state of a global')
def _(d):
    # BUILD on the Counter class itself with slot state replacing its __init__.
    state = NONE + EMPTY_DICT + op_str('__init__') + op_global('collections', 'OrderedDict') \
        + SETITEM + TUPLE2
    pickle_bytes = PROTO + op_global('collections', 'Counter') + state + BUILD + b'0' \
        + op_dict({'w': op_tensor('0', 1, [1])}) + STOP
    return write_archive(d / 'counter.ckpt', pickle_bytes, {'0': b'\0' * 4})


@attack('loader_function_defaults', 4, r'sets the state of a global')
def _(d):
    state = NONE + EMPTY_DICT + op_str('__defaults__') + NONE + TUPLE1 + SETITEM + TUPLE2
    pickle_bytes = PROTO + op_global('torch._utils', '_rebuild_tensor_v2') + state + BUILD + STOP
    return write_archive(d / 'defaults.ckpt', pickle_bytes)


@attack('code_execution', 8, r"refers to '(posix|os).system', which is not among the names .*could "
        r'run code')
def _(d):
    path = d / 'code.ckpt'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'x': RunsCode(d / 'markers' / 'pwned')}, path)
    return path


@attack('huge_memo_index', 5, r'cannot tell which preset the weights are for')
def _(d):
    # The C unpickler sizes its memo array by the largest index (3.3 GB for this file).
    pickle_bytes = PROTO + op_dict({'w': op_tensor('0', 1, [1]) + op_put(0xFFFFFFF0)}) + STOP
    return write_archive(d / 'memo.ckpt', pickle_bytes, {'0': b'\0' * 4})


@attack('bzip2_member', 5, r"member 'archive/data.pkl' uses compression method 12")
def _(d):
    return write_archive(d / 'bzip2.ckpt', PROTO + NONE * 10 ** 6 + STOP, method=zipfile.ZIP_BZIP2)


@attack('lzma_member', 8, r"member 'archive/data.pkl' uses compression method 14")
def _(d):
    return write_archive(d / 'lzma.ckpt', PROTO + EMPTY_DICT + STOP, method=zipfile.ZIP_LZMA)


@attack('deflate_claims_4_gib', 5, r"member 'archive/data/0' claims 4294967040 bytes from \d+ "
        r'stored bytes')
def _(d):
    path = write_archive(d / 'claims.ckpt', PROTO + op_dict({'w': op_tensor('0', 1024, [1024])})
                         + STOP, {'0': b'\0' * 4096})
    patch_declared_size(path, 'archive/data/0', 0xFFFFFF00)
    return path


@attack('one_storage_200_views', 5, r'cannot tell which preset the weights are for')
def _(d):
    # 200 tensors over one stored 4 MiB record: read once (4 MiB), not 200 times (800 MB).
    numel = 2 ** 20
    views = {f'view{i}': op_tensor('0', numel, [numel]) for i in range(200)}
    return write_archive(d / 'shared.ckpt', PROTO + op_dict(views) + STOP,
                         {'0': b'\0' * (4 * numel)}, record_method=zipfile.ZIP_STORED)


@attack('deflate_bomb', 5, r'the members expand to 33554\d+ bytes from a file of \d+ \(more than '
        r'32x; a decompression bomb\)')
def _(d):
    numel = 8 * 2 ** 20
    return write_archive(d / 'deflate_bomb.ckpt', PROTO + op_dict({'w': op_tensor('0', numel, [numel])})
                         + STOP, {'0': b'\0' * (4 * numel)})


@attack('expanded_view', 5, r"tensor 'w': views 1000000000 elements of 4 bytes over a storage "
        r'record of 4 bytes')
def _(d):
    # Stride 0: a billion elements over 4 bytes; any copy or cast of it would allocate 4 GB.
    pickle_bytes = PROTO + op_dict({'w': op_tensor('0', 1, [10 ** 9], stride=[0])}) + STOP
    return write_archive(d / 'expanded.ckpt', pickle_bytes, {'0': b'\0' * 4})


@attack('mark_flood', 5, r'more than a checkpoint needs')
def _(d):
    return write_archive(d / 'marks.ckpt', PROTO + MARK * 600_000 + STOP, method=zipfile.ZIP_STORED)


@attack('global_flood', 5, r'names more classes than a checkpoint holds')
def _(d):
    names = b''.join(op_global('omegaconf.nodes', f'Node{i}') for i in range(2000))
    return write_archive(d / 'globals.ckpt', PROTO + names + STOP, method=zipfile.ZIP_STORED)


@attack('set_copy_bomb', 5, r'more than a checkpoint needs')
def _(d):
    # One list of 100k items turned into a set 10k times: 10**9 element copies from 200 KB.
    items = EMPTY_LIST + op_put(0) + MARK + NONE * 100_000 + b'e'
    copies = op_global('builtins', 'set') + op_put(1) + EMPTY_LIST + MARK \
        + (op_get(1) + op_get(0) + TUPLE1 + REDUCE) * 10_000 + b'e'
    return write_archive(d / 'set_copies.ckpt', PROTO + items + copies + STOP,
                         method=zipfile.ZIP_STORED)


@attack('rehash_bomb', 5, r'more than a checkpoint needs')
def _(d):
    # A list holding one 50,000-element tuple 18 times, made a set 10k times: 9 * 10**9 hashes.
    heavy = MARK + NONE * 50_000 + TUPLE + op_put(0)
    items = EMPTY_LIST + op_put(1) + MARK + op_get(0) * 18 + b'e'
    copies = op_global('builtins', 'set') + op_put(2) + EMPTY_LIST + MARK \
        + (op_get(2) + op_get(1) + TUPLE1 + REDUCE) * 10_000 + b'e'
    return write_archive(d / 'rehash.ckpt', PROTO + heavy + items + copies + STOP,
                         method=zipfile.ZIP_STORED)


@attack('bytearray_allocation', 5, r"refers to 'builtins.bytearray'")
def _(d):
    return write_archive(d / 'bytearray.ckpt', PROTO + op_global('builtins', 'bytearray')
                         + op_int(2 ** 31 - 1) + TUPLE1 + REDUCE + STOP)


@attack('wrong_weights', 7, r'does not fit the network: 1 keys of another type: '
        r'decoder.cls_head.2.weight: checkpoint torch.int8, network torch.float32; 2 keys with NaN '
        r'or inf values: encoder.pts_embed.weight, decoder.cls_head.2.bias$')
def _(d):
    """The `small` network's complete float16 checkpoint with a NaN class-head bias (every voxel
    would be "empty"), int8 class-head weights, and a float64 1e300 that is inf in float32."""
    from safetensors.torch import load_file
    path = d / 'wrong_weights.safetensors'
    torch.manual_seed(0)
    save_checkpoint(SMALL.model.build(), SMALL, path, half=True)
    state = load_file(str(path))
    state['decoder.cls_head.2.bias'][0] = float('nan')
    state['decoder.cls_head.2.weight'] = state['decoder.cls_head.2.weight'].to(torch.int8)
    state['encoder.pts_embed.weight'] = torch.full_like(state['encoder.pts_embed.weight'], 1e300,
                                                        dtype=torch.float64)
    save_file(state, str(path), metadata={'format': FORMAT, 'preset': json.dumps(SMALL.to_dict())})
    return path


@attack('truncated_deflate_stream', 8, r'not a readable torch.save archive|corrupt')
def _(d):
    path = write_archive(d / 'zlib.ckpt', PROTO + NONE * 100_000 + STOP)
    data = bytearray(path.read_bytes())
    start = data.find(b'PK\x03\x04') + 30 + len('archive/data.pkl')
    data[start + 20:start + 60] = bytes(range(40))   # damage the deflate stream, keep the headers
    path.write_bytes(bytes(data))
    return path


@attack('stack_underflow', 8, r'corrupt pickle \(stack underflow\)')
def _(d):
    return write_archive(d / 'underflow.ckpt', PROTO + TUPLE1 + STOP)


@attack('memo_read_before_write', 8, r'memo 7 read before it is written')
def _(d):
    return write_archive(d / 'memo_get.ckpt', PROTO + op_get(7) + STOP)


@attack('call_with_non_tuple', 8, r"calls 'collections.OrderedDict'")
def _(d):
    return write_archive(d / 'non_tuple.ckpt', PROTO + op_global('collections', 'OrderedDict')
                         + NONE + REDUCE + STOP)


@attack('not_a_state_dict', 8, r'holds no state dict')
def _(d):
    return write_archive(d / 'list.ckpt', PROTO + EMPTY_LIST + STOP)


@attack('corrupt_safetensors_header', 8, r'corrupt or truncated safetensors file')
def _(d):
    path = d / 'header.safetensors'
    header = b'{"x": {"dtype": "F32", "shape": [1000000000], "data_offsets": [0, 4000000000]}}'
    path.write_bytes(struct.pack('<Q', len(header)) + header + b'\0' * 16)
    return path


# --------------------------------------------------------------------------- the child process
CHILD = r"""
import collections, json, os, sys, types, urllib.request
import onnx, onnxruntime, torch  # imported before auditing: their import reads system files
from ssc_core import checkpoint, torch_archive
from ssc_core.checkpoint import CheckpointError, read_state_dict
from ssc_core.predictor import Predictor
from ssc_core.tools import convert

def fingerprint():
    classes = (collections.Counter, collections.OrderedDict, collections.defaultdict, dict, list,
               set, torch.Tensor, torch.nn.Parameter, torch.Size)
    functions = [f for m in (checkpoint, torch_archive, torch._utils) for f in vars(m).values()
                 if isinstance(f, types.FunctionType)]
    return ([sorted((k, id(v)) for k, v in vars(c).items()) for c in classes],
            [(f.__defaults__, f.__kwdefaults__, id(f.__code__)) for f in functions])

events = []
code_dirs = tuple({sys.prefix, sys.base_prefix, os.path.dirname(os.path.dirname(checkpoint.__file__))})

def audit(event, args):  # sockets, and files or folders other than code
    if event == 'socket.connect':
        events.append(f'{event} {args[1]}')
    elif event in ('open', 'os.listdir', 'os.scandir') and args and isinstance(args[0], str) \
            and not os.path.abspath(args[0]).startswith(code_dirs):
        events.append(f'{event} {args[0]}')

before = fingerprint()
jobs, out = json.loads(sys.argv[1]), sys.argv[2]
results = {}
sys.addaudithook(audit)
for name, (path, args) in jobs.items():
    result = results[name] = {}
    events.clear()
    try:  # the convert CLI turns exactly a CheckpointError into SystemExit('ssc_convert: ...')
        if args.get('backend'):
            Predictor.from_checkpoint(path, backend=args['backend'])
        else:
            convert.main([path, out] + (['--preset', args['preset']] if args.get('preset') else []))
        result['error'] = None
    except CheckpointError as e:
        result['error'], result['message'] = 'CheckpointError', str(e)
    except SystemExit as e:
        cli = str(e.code)
        if cli.startswith('ssc_convert: '):
            result['error'], result['message'] = 'CheckpointError', cli[len('ssc_convert: '):]
        else:
            result['error'], result['message'] = 'SystemExit', cli
    except BaseException as e:
        result['error'], result['message'] = type(e).__name__, str(e)[:1000]
    result['access'] = [e for e in events if e != f'open {path}']
def peak_rss_mib():
    # VmHWM belongs to this program's memory map; ru_maxrss would also count the forking parent
    with open('/proc/self/status') as status:
        return next(int(line.split()[1]) for line in status if line.startswith('VmHWM')) / 1024
shared, _ = read_state_dict(jobs['one_storage_200_views'][0])
urllib.request.urlopen(os.environ['HF_ENDPOINT'] + '/control', timeout=10).read()
print(json.dumps({
    'results': results,
    'classes_unchanged': fingerprint() == before,
    'counter': collections.Counter('aab') == {'a': 2, 'b': 1},
    'shared_storages': len({t.untyped_storage().data_ptr() for t in shared.values()}),
    'maxrss_mb': peak_rss_mib()}))
"""


class _RecordingHub(http.server.BaseHTTPRequestHandler):
    """A stand-in model hub that answers nothing and records every request."""
    requests: ClassVar[list[str]] = []

    def do_GET(self):
        self.requests.append(self.path)
        self.send_response(200 if self.path == '/control' else 404)
        self.end_headers()

    do_HEAD = do_POST = do_GET

    def log_message(self, *args):
        pass


@pytest.fixture(scope='module')
def hostile(tmp_path_factory):
    """Every attack file, loaded by one child process: its report and the hub's requests."""
    directory = tmp_path_factory.mktemp('hostile')
    (directory / 'markers').mkdir()
    jobs = {name: (str(builder(directory)), args) for name, (_, builder, _, args) in ATTACKS.items()}
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), _RecordingHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    env = dict(os.environ, PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}',
               HF_ENDPOINT=f'http://127.0.0.1:{server.server_address[1]}', HF_HUB_OFFLINE='0',
               HF_HUB_CACHE=str(directory / 'hub_cache'), NO_PROXY='*', no_proxy='*')
    # The real CLI on one file runs beside the child (one line, exit 1, no traceback).
    cli = subprocess.Popen([sys.executable, '-m', 'ssc_core.tools.convert', jobs['nested_slices'][0],
                            str(directory / 'converted.safetensors')],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        child = subprocess.run([sys.executable, '-c', CHILD, json.dumps(jobs),
                                str(directory / 'converted.safetensors')],
                               capture_output=True, text=True, timeout=300, env=env)
        cli_out, cli_err = cli.communicate(timeout=300)
    finally:
        server.shutdown()
    assert child.returncode == 0, f'exit {child.returncode}: {child.stderr[-3000:]}'
    report = json.loads(child.stdout.strip().splitlines()[-1])
    report.update(requests=list(_RecordingHub.requests), jobs=jobs, directory=directory,
                  cli=(cli.returncode, cli_out, cli_err))
    return report


@pytest.mark.parametrize('name', sorted(ATTACKS))
def test_attack_is_refused(hostile, name):
    item, _, match, _ = ATTACKS[name]
    result, path = hostile['results'][name], hostile['jobs'][name][0]
    assert result['error'] == 'CheckpointError', (item, result)
    message = result['message']
    assert message.startswith(path) and re.search(match, message), message
    assert message.isprintable() and len(message) < 2000   # one line, no escape sequences
    assert result['access'] == []                                     # no other file, no socket
    assert not list((hostile['directory'] / 'markers').iterdir())     # no code ran
    assert not (hostile['directory'] / 'hub_cache').exists()
    assert not (hostile['directory'] / 'converted.safetensors').exists()
    assert hostile['requests'] == ['/control']                        # none reached the hub
    assert hostile['classes_unchanged'] and hostile['counter']
    assert hostile['maxrss_mb'] < 1024, hostile['maxrss_mb']


def test_one_storage_is_read_once(hostile):
    assert hostile['shared_storages'] == 1


def test_admitted_torch_names_are_those_torch_admits():
    """The dry run's torch-side names are a subset of what PyTorch's weights-only unpickler
    allows by itself (only data-class placeholders and value types are added)."""
    from torch._weights_only_unpickler import _get_allowed_globals

    from ssc_core.torch_archive import _ROLES, VALUE_TYPES
    assert {name for name in _ROLES if name not in VALUE_TYPES} <= set(_get_allowed_globals())


def test_every_class_of_the_issue_is_covered():
    assert {item for item, *_ in ATTACKS.values()} == set(range(1, 9))


def test_convert_cli_prints_one_line_for_a_refused_file(hostile):
    returncode, stdout, stderr = hostile['cli']
    assert returncode == 1 and stdout == ''
    assert stderr.count('\n') == 1 and "refers to 'builtins.slice'" in stderr, stderr


def test_lightning_checkpoint_with_omegaconf_hyperparameters(tmp_path):
    """A fine-tune of ours saved by a real Trainer, its hyper-parameters holding a DictConfig
    (torch.save writes protocol-2 names such as __builtin__.long), loads bit-identically."""
    import pickletools

    import lightning as L
    from omegaconf import OmegaConf

    from ssc_core.training import SSCModule

    class FineTune(SSCModule):
        def __init__(self, cfg, note: str = 'fine-tune'):
            super().__init__(preset='small', lr=cfg.optim.lr)
            self.save_hyperparameters()

        def training_step(self, batch, batch_idx):
            return sum(p.float().square().sum() for p in self.model.parameters()) * 1e-6

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.zeros(2, 1), batch_size=1)

    cfg = OmegaConf.create({'optim': {'lr': 1e-3, 'milestones': [3, 5]},
                            'data': {'root': '${optim.lr}', 'flag': True, 'steps': 7}})
    torch.manual_seed(0)
    module = FineTune(cfg)
    trainer = L.Trainer(max_steps=1, accelerator='cpu', logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path)
    trainer.fit(module)
    path = tmp_path / 'fine_tune.ckpt'
    trainer.save_checkpoint(path)
    with zipfile.ZipFile(path) as archive:
        pickle_bytes = archive.read(next(n for n in archive.namelist() if n.endswith('data.pkl')))
    names = {arg for op, arg, _ in pickletools.genops(io.BytesIO(pickle_bytes))
             if op.name == 'GLOBAL'}
    assert '__builtin__ long' in names and 'omegaconf.dictconfig DictConfig' in names, names
    model, preset = load_model(path)
    assert preset is SMALL
    expected = module.model.state_dict()
    assert list(model.state_dict()) == list(expected)
    for key, value in model.state_dict().items():
        assert value.dtype == expected[key].dtype and torch.equal(value, expected[key]), key
