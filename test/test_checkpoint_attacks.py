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

from ssc_core.checkpoint import FORMAT, CheckpointError, load_model, save_checkpoint
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
# name -> ((issue, item), builder(directory) -> path, what the message says, load arguments)
ATTACKS = {}


def attack(name: str, item: int, match: str, issue: int = 13, **load_args):
    def register(builder):
        ATTACKS[name] = ((issue, item), builder, match, load_args)
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


@attack('onnx_external_data', 1, r"tensor 'w' keeps its data in another file", backend='onnxruntime')
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


# --------------------------------------------------------------------------- issue 23
# A second campaign: files that disarm the loader's checks, hash collisions, memory before
# weights, ONNX side files and graphs, names that break the line, weights that compute NaN,
# implausible presets, pickle protocols 4-5 and the legacy format.
PROTO4, FRAME, MEMOIZE, STACK_GLOBAL = b'\x80\x04', b'\x95', b'\x94', b'\x93'
BAD_NAME = 'x\n\x1b[2K\x1b[32mOK: checkpoint verified'   # ends the line, rewrites the terminal
ESCAPED_BAD_NAME = re.escape(repr(BAD_NAME)[1:-1])
COLLIDING = 2 ** 61 - 1   # k * (2**61 - 1) hashes to 0 for every k


def op_long(value: int) -> bytes:
    data = value.to_bytes((value.bit_length() + 8) // 8, 'little', signed=True)
    return b'\x8a' + bytes([len(data)]) + data


def op_short_str(text: str) -> bytes:
    data = text.encode()
    return b'\x8c' + bytes([len(data)]) + data


def op_hooks() -> bytes:
    return op_global('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE


def op_parameter_with_state(state: bytes) -> bytes:
    """A Parameter over a stride-0 10**6 x 10**6 view of one float, with attribute ``state``."""
    return (op_global('torch._utils', '_rebuild_parameter_with_state') + MARK
            + op_tensor('0', 1, [10 ** 6, 10 ** 6], stride=[0, 0]) + NEWFALSE + op_hooks()
            + state + TUPLE + REDUCE)


def op_attributes(**values: bytes) -> bytes:
    return op_dict(values)


def state_dict_archive(path: Path, entries: dict[str, bytes]) -> Path:
    return write_archive(path, PROTO + op_dict(entries) + STOP, {'0': b'\0' * 4})


def _parameter_state(name, state):
    @attack(f'parameter_state_{name}', 1, r'a parameter with attribute state \(it would set '
            r'attributes on the tensor', issue=23)
    def _(d):
        return state_dict_archive(d / f'param_{name}.ckpt',
                                  {'decoder.cls_head.2.bias': op_parameter_with_state(state)})


_parameter_state('numel', op_attributes(numel=op_global('builtins', 'int')))
_parameter_state('untyped_storage', op_attributes(untyped_storage=op_global('builtins', 'object')))
_parameter_state('detach', op_attributes(detach=op_global('builtins', 'dict')))
_parameter_state('slots', op_attributes() + op_attributes(numel=op_global('builtins', 'int'))
                 + TUPLE2)


def _ordered_dict_build(method):
    @attack(f'ordered_dict_build_{method}', 1, r'sets attributes of an OrderedDict other than the '
            r'_metadata torch.save writes', issue=23)
    def _(d):
        body = (op_global('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE + MARK
                + op_str('w') + op_tensor('0', 1, [1]) + SETITEMS
                + op_attributes(**{method: op_global('builtins', 'dict')}) + BUILD)
        return write_archive(d / f'od_{method}.ckpt', PROTO + body + STOP, {'0': b'\0' * 4})


_ordered_dict_build('get')
_ordered_dict_build('items')


@attack('tensor_hooks', 1, r'a tensor with backward hooks', issue=23)
def _(d):
    tensor = op_tensor('0', 1, [1]).replace(
        op_global('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE,
        op_hooks() + op_str('hook') + op_global('builtins', 'dict') + SETITEM)
    return state_dict_archive(d / 'hooks.ckpt', {'w': tensor})


@attack('tensor_hooks_filled_later', 1, r"fills a tensor's hooks after building the tensor", issue=23)
def _(d):
    tensor = op_tensor('0', 1, [1]).replace(
        op_global('collections', 'OrderedDict') + EMPTY_TUPLE + REDUCE, op_hooks() + op_put(7))
    later = op_get(7) + op_str('hook') + op_global('builtins', 'dict') + SETITEM
    return write_archive(d / 'hooks_later.ckpt', PROTO + op_dict({'w': tensor}) + later + STOP,
                         {'0': b'\0' * 4})


def _collisions(name, container, count, wrap_pairs=False):
    @attack(f'hash_collisions_{name}', 2, r'a dict or set of \d+ keys whose hashes the file '
            r'chooses .*quadratic time', issue=23)
    def _(d):
        keys = [op_long(k * COLLIDING) for k in range(1, count + 1)]
        if container == 'dict':
            body = EMPTY_DICT + MARK + b''.join(k + NONE for k in keys) + SETITEMS
        else:
            items = [k + NONE + TUPLE2 for k in keys] if wrap_pairs else keys
            module, cls = container.split('.')
            body = (op_global(module, cls) + EMPTY_LIST + MARK + b''.join(items) + b'e'
                    + TUPLE1 + REDUCE)
        return write_archive(d / f'collide_{name}.ckpt', PROTO + body + STOP,
                             method=zipfile.ZIP_STORED)


_collisions('dict', 'dict', 150_000)
_collisions('set', 'builtins.set', 200_000)
_collisions('counter', 'collections.Counter', 200_000)
_collisions('ordered_dict_pairs', 'collections.OrderedDict', 50_000, wrap_pairs=True)


@attack('preset_at_upper_bounds', 3, r'does not fit the network: \d{4} missing keys', issue=23)
def _(d):
    """3.5 KB naming the largest network the schema allows: built on the meta device, refused
    before the 4.8 GB allocation."""
    def largest(p):
        p['model'].update(backbone='resnet101', embed_dims=1024, num_layers=12, num_queries=1000,
                          image_shape=[4096, 4096])
        p['model']['pixel_decoder'].update(conv_dim=1024, num_heads=64, num_layers=12,
                                           feedforward_channels=8192, num_groups=1024)
    return write_preset_file(d / 'largest.safetensors', preset_variant(largest))


def contract_onnx(path: Path, change=None, preset_json: str | None = None) -> Path:
    """A tiny model that passes every check an export passes (the small preset's inputs and
    outputs, exported operators, static shapes): constant logits from the image's sum.
    ``change(graph, helper, TensorProto)`` makes it hostile."""
    import onnx
    from onnx import TensorProto, helper

    from ssc_core.backends.onnx_model import input_shapes, output_shapes
    from ssc_core.presets import ONNX_SIZES_KEY
    types = {'projected_pix': TensorProto.INT64, 'fov_mask': TensorProto.BOOL}
    inputs = [helper.make_tensor_value_info(name, types.get(name, TensorProto.FLOAT), shape)
              for name, shape in input_shapes(SMALL).items()]
    shapes = output_shapes(SMALL)
    outputs = [helper.make_tensor_value_info('labels', TensorProto.UINT8, shapes['labels']),
               helper.make_tensor_value_info('logits', TensorProto.FLOAT, shapes['logits']),
               helper.make_tensor_value_info('selection_counts', TensorProto.INT64,
                                             shapes['selection_counts'])]
    init = [helper.make_tensor('rank5', TensorProto.INT64, [5], [1, 1, 1, 1, 1]),
            helper.make_tensor('logits_shape', TensorProto.INT64, [5], shapes['logits']),
            helper.make_tensor('no_counts', TensorProto.INT64, [1, 2], [0, 0])]
    nodes = [helper.make_node('ReduceSum', ['img'], ['total'], keepdims=1),
             helper.make_node('Reshape', ['total', 'rank5'], ['total5']),
             helper.make_node('Expand', ['total5', 'logits_shape'], ['logits']),
             helper.make_node('ArgMax', ['logits'], ['best'], axis=1, keepdims=0),
             helper.make_node('Cast', ['no_counts'], ['selection_counts'], to=TensorProto.INT64),
             helper.make_node('Cast', ['best'], ['labels'], to=TensorProto.UINT8)]
    graph = helper.make_graph(nodes, 'contract', inputs, outputs, initializer=init)
    if change is not None:
        change(graph, helper, TensorProto)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid('', 20)])
    entry = model.metadata_props.add()
    entry.key, entry.value = 'ssc_ros.preset', preset_json or json.dumps(SMALL.to_dict())
    entry = model.metadata_props.add()
    entry.key, entry.value = ONNX_SIZES_KEY, json.dumps({'visible': 64, 'proposals': 64})
    onnx.save_model(model, str(path))
    return path


def external(tensor, TensorProto, location='side.bin'):
    """Mark ``tensor`` as keeping its data in ``location``."""
    tensor.ClearField('int64_data')
    tensor.ClearField('float_data')
    tensor.data_location = TensorProto.EXTERNAL
    entry = tensor.external_data.add()
    entry.key, entry.value = 'location', location
    return tensor


def _onnx_attack(name, item, match, change=None, preset_json=None):
    attack(f'onnx_{name}', item, match, issue=23, backend='onnxruntime')(
        lambda d: contract_onnx(d / f'{name}.onnx', change, preset_json))


def _sparse_indices(graph, helper, TensorProto):
    values = helper.make_tensor('sparse_values', TensorProto.FLOAT, [1], [1.0])
    indices = external(helper.make_tensor('sparse_indices', TensorProto.INT64, [1], [0]), TensorProto)
    graph.sparse_initializer.append(helper.make_sparse_tensor(values, indices, [4]))


def _constant_sparse_value(graph, helper, TensorProto):
    values = helper.make_tensor('constant_values', TensorProto.FLOAT, [1], [1.0])
    indices = external(helper.make_tensor('constant_indices', TensorProto.INT64, [1], [0]),
                       TensorProto)
    graph.node.append(helper.make_node('Constant', [], ['unused'],
                                       sparse_value=helper.make_sparse_tensor(values, indices, [4])))


def _subgraph_initializer(graph, helper, TensorProto):
    out = helper.make_tensor_value_info('branch', TensorProto.FLOAT, [1])
    weight = external(helper.make_tensor('branch_weight', TensorProto.FLOAT, [1], [1.0]), TensorProto)
    branch = helper.make_graph([helper.make_node('Identity', ['branch_weight'], ['branch'])], 'b',
                               [], [out], initializer=[weight])
    graph.node.append(helper.make_node('If', ['fov_mask'], ['unused'], then_branch=branch,
                                       else_branch=branch))


_onnx_attack('sparse_initializer_indices', 4, r"tensor 'sparse_indices' keeps its data in "
             r'another file', _sparse_indices)
_onnx_attack('constant_sparse_value', 4, r"tensor 'constant_indices' keeps its data in another "
             r'file', _constant_sparse_value)
_onnx_attack('subgraph_initializer', 4, r"tensor 'branch_weight' keeps its data in another file",
             _subgraph_initializer)


def _input_type(name, elem_type):
    def change(graph, helper, TensorProto):
        graph.input[0].type.tensor_type.elem_type = getattr(TensorProto, elem_type)
    _onnx_attack(f'input_{name}', 8, rf'input img is declared {elem_type}, the network takes '
                 'float32', change)


_input_type('double', 'DOUBLE')
_input_type('string', 'STRING')


def _drop_logits(graph, helper, TensorProto):
    del graph.output[1]


def _labels_shape(graph, helper, TensorProto):
    """The labels from an If whose branch yields (2, 2, 2), declared as the preset's."""
    out = helper.make_tensor_value_info('small', TensorProto.UINT8, [2, 2, 2])
    const = helper.make_tensor('small_value', TensorProto.UINT8, [2, 2, 2], [0] * 8)
    branch = helper.make_graph([helper.make_node('Identity', ['small_value'], ['small'])], 'b',
                               [], [out], initializer=[const])
    nodes = [n for n in graph.node if n.output[0] != 'labels']
    nodes += [helper.make_node('ReduceMax', ['fov_mask_float'], ['any']),
              helper.make_node('Cast', ['fov_mask'], ['fov_mask_float'], to=TensorProto.FLOAT),
              helper.make_node('Cast', ['any'], ['condition'], to=TensorProto.BOOL),
              helper.make_node('If', ['condition'], ['labels'], then_branch=branch,
                               else_branch=branch)]
    del graph.node[:]
    graph.node.extend(nodes)


def _loop(graph, helper, TensorProto):
    trip = helper.make_tensor('trip', TensorProto.INT64, [], [2 ** 62])
    body = helper.make_graph(
        [helper.make_node('Identity', ['cond_in'], ['cond_out'])], 'body',
        [helper.make_tensor_value_info('i', TensorProto.INT64, []),
         helper.make_tensor_value_info('cond_in', TensorProto.BOOL, [])],
        [helper.make_tensor_value_info('cond_out', TensorProto.BOOL, [])])
    graph.initializer.append(trip)
    graph.node.append(helper.make_node('Loop', ['trip', ''], [], body=body))


def _allocation(op):
    def change(graph, helper, TensorProto):
        graph.initializer.append(helper.make_tensor('huge_shape', TensorProto.INT64, [1],
                                                    [3 * 2 ** 30 // 4]))
        if op == 'ConstantOfShape':
            graph.node.append(helper.make_node('ConstantOfShape', ['huge_shape'], ['huge']))
        else:
            graph.node.append(helper.make_node('Expand', ['total', 'huge_shape'], ['huge']))
    return change


def _shape_from_values(graph, helper, TensorProto):
    graph.initializer.append(helper.make_tensor('one', TensorProto.INT64, [1], [1]))
    graph.node.extend([helper.make_node('ReduceMax', ['depth'], ['deepest'], keepdims=0),
                       helper.make_node('Cast', ['deepest'], ['count'], to=TensorProto.INT64),
                       helper.make_node('Reshape', ['count', 'one'], ['count1']),
                       helper.make_node('ConstantOfShape', ['count1'], ['sized_by_depth'])])


def _custom_domain(graph, helper, TensorProto):
    graph.node.append(helper.make_node('Run', ['img'], ['unused'], domain='com.evil'))


_onnx_attack('outputs_missing', 8, r"the model gives outputs \['labels', 'selection_counts'\], an export "
             r"gives \['labels', 'logits', 'selection_counts'\]", _drop_logits)
_onnx_attack('if_labels_2x2x2', 8, r"operators an export never holds: 'If'", _labels_shape)
_onnx_attack('loop_2_62', 8, r"operators an export never holds: 'Loop'", _loop)
_onnx_attack('constant_of_shape_3gb', 8, r"tensor 'huge' \(ConstantOfShape\) has shape "
             r'\[805306368\], more than the \d+ elements', _allocation('ConstantOfShape'))
_onnx_attack('expand_3gb', 8, r"tensor 'huge' \(Expand\) has shape \[1, 1, 1, 805306368\], "
             'more than', _allocation('Expand'))
_onnx_attack('shape_from_input_values', 8, r"tensor 'sized_by_depth' \(ConstantOfShape\) has a "
             'shape that depends on input values', _shape_from_values)
_onnx_attack('custom_domain', 8, r"operators an export never holds: 'com.evil.Run'", _custom_domain)


@attack('zip_member_name_breaks_line', 6, rf"member 'archive/{ESCAPED_BAD_NAME}' uses compression "
        'method 12', issue=23)
def _(d):
    path = write_archive(d / 'member_name.ckpt', PROTO + EMPTY_DICT + STOP)
    with zipfile.ZipFile(path, 'a') as archive:
        archive.writestr(f'archive/{BAD_NAME}', b'', compress_type=zipfile.ZIP_BZIP2)
    return path


@attack('tensor_name_breaks_line', 6, rf"1 unexpected keys: '{ESCAPED_BAD_NAME}'", issue=23,
        preset='small')
def _(d):
    path = d / 'tensor_name.safetensors'
    save_file({BAD_NAME: torch.zeros(1)}, str(path))
    return path


@attack('storage_key_breaks_line', 6, rf"storage '{ESCAPED_BAD_NAME}' is missing", issue=23)
def _(d):
    return write_archive(d / 'storage_key.ckpt',
                         PROTO + op_dict({'w': op_tensor(BAD_NAME, 1, [1])}) + STOP)


@attack('global_name_breaks_line', 6, rf"refers to 'os.{ESCAPED_BAD_NAME}', which is not",
        issue=23)
def _(d):
    return write_archive(d / 'global_name.ckpt', PROTO4 + op_short_str('os')
                         + op_short_str(BAD_NAME) + STACK_GLOBAL + STOP)


@attack('preset_key_breaks_line', 6, rf"unexpected keys \['{ESCAPED_BAD_NAME}'\]", issue=23)
def _(d):
    return write_preset_file(d / 'preset_key.safetensors',
                             preset_variant(lambda p: p['model'].update({BAD_NAME: 1})))


_onnx_attack('input_name_breaks_line', 6, rf"the model takes inputs \{{'{ESCAPED_BAD_NAME}'",
             lambda graph, helper, TensorProto: setattr(graph.input[0], 'name', BAD_NAME))


@attack('negative_running_variances', 7, r'2 BatchNorm running variances below 0: '
        r'encoder.model.backbone.bn1.running_var, decoder.aspp.blks.0.1.running_var$', issue=23)
def _(d):
    """The `small` network's complete float16 checkpoint with running variances of -1 and
    -1e-5 (finite, so they pass every other check; the network would compute NaN)."""
    from safetensors.torch import load_file
    path = d / 'negative_var.safetensors'
    torch.manual_seed(0)
    save_checkpoint(SMALL.model.build(), SMALL, path, half=True)
    state = load_file(str(path))
    state['encoder.model.backbone.bn1.running_var'][0] = -1.0
    state['decoder.aspp.blks.0.1.running_var'][:] = -1e-5
    save_file(state, str(path), metadata={'format': FORMAT, 'preset': json.dumps(SMALL.to_dict())})
    return path


def _implausible_preset(name, change, match):
    attack(f'preset_{name}', 9, match, issue=23)(
        lambda d: write_preset_file(d / f'preset_{name}.safetensors', preset_variant(change)))


_implausible_preset('focal_1e-300', lambda p: p.update(cam_K=[[1e-300, 0, 160], [0, 1e-300, 48],
                                                                [0, 0, 1]]),
                    r'stored preset: K: focal lengths fx=1e-300, fy=1e-300 are implausible for a '
                    r'320x96 image')
_implausible_preset('rotation_5e-324', lambda p: p.update(cam_from_grid=[
    [5e-324, 0, 0, 0], [0, 5e-324, 0, 0], [0, 0, 5e-324, 0], [0, 0, 0, 1]]),
    r'stored preset: cam_from_grid: its 3x3 part is not a rotation')
for _sign in (1, -1):
    _implausible_preset(f'origin_{_sign * 10000}', lambda p, s=_sign: p.update(
        voxel_origin=[s * 1e4] * 3), r'stored preset: voxel_origin \(-?10000, -?10000, -?10000\): '
        r'the camera sees none of the 51.2 x 51.2 x 6.4 m grid')
_implausible_preset('class_frequencies_zero', lambda p: p.update(class_frequencies=[0.0] * 20),
                    r'stored preset: class_frequencies: expected voxel counts above 1')
_onnx_attack('preset_focal_1e-300', 9, r'stored preset: K: focal lengths fx=1e-300',
             preset_json=preset_variant(lambda p: p.update(
                 cam_K=[[1e-300, 0, 160], [0, 1e-300, 48], [0, 0, 1]])))


@attack('legacy_torch_save', 10, r"written in torch.save's legacy format \("
        r'_use_new_zipfile_serialization=False\), which is not read', issue=23)
def _(d):
    path = d / 'legacy.pt'
    torch.save({'state_dict': {'w': torch.zeros(1)}}, path, _use_new_zipfile_serialization=False)
    return path


@attack('protocol_4_set', 10, r'a set written with pickle protocol 4 or 5 \(ADDITEMS\)', issue=23)
def _(d):
    path = d / 'protocol4_set.ckpt'
    torch.save({'state_dict': {'w': torch.zeros(1)}, 'ids': {1, 2}}, path, pickle_protocol=4)
    return path


@attack('protocol_4_global_from_tuple', 10, r'STACK_GLOBAL of something other than two short '
        'strings', issue=23)
def _(d):
    return write_archive(d / 'stack_global_tuple.ckpt', PROTO4 + FRAME + struct.pack('<Q', 6)
                         + op_short_str('os') + EMPTY_TUPLE + STACK_GLOBAL + STOP)


# --------------------------------------------------------------------------- the child process
CHILD = r"""
import collections, json, os, sys, types, urllib.request
import ssc_core  # first: it turns ONNX Runtime's telemetry off before onnxruntime is imported
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


# --------------------------------------------------------------------------- ONNX Runtime offline
OFFLINE_CHILD = r"""
import json, os, socket, sys, threading, time
queries = []

def name(packet):  # the name a DNS query asks for
    labels, i = [], 12
    while i < len(packet) and packet[i]:
        labels.append(packet[i + 1:i + 1 + packet[i]].decode('latin1'))
        i += 1 + packet[i]
    return '.'.join(labels)

def serve(address, kind):  # a name server that records what it is asked and answers nothing
    sock = socket.socket(socket.AF_INET6 if ':' in address else socket.AF_INET, kind)
    sock.bind((address, 53))
    if kind == socket.SOCK_STREAM:
        sock.listen()
    while True:
        if kind == socket.SOCK_DGRAM:
            queries.append(name(sock.recvfrom(4096)[0]))
        else:
            connection = sock.accept()[0]
            queries.append(name(connection.recv(4096)[2:]))
            connection.close()

for address in json.loads(sys.argv[2]):
    for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
        threading.Thread(target=serve, args=(address, kind), daemon=True).start()
import numpy as np
from ssc_core.predictor import Predictor
events, code = [], (sys.prefix, sys.base_prefix, os.getcwd())

def audit(event, args):  # sockets and name lookups, and files opened for writing
    if event.startswith(('socket.connect', 'socket.getaddrinfo', 'socket.gethostbyname',
                         'socket.sendto', 'socket.sendmsg')):
        events.append(f'{event} {args[1:2]}')
    elif event == 'open' and isinstance(args[0], str) and not args[0].startswith(code) and (
            any(c in (args[1] or '') for c in 'wax+') or (args[2] or 0) & (os.O_WRONLY | os.O_RDWR)):
        events.append(f'{event} {args[0]}')

sys.addaudithook(audit)
predictor = Predictor.from_checkpoint(sys.argv[1], backend='onnxruntime')
started = time.monotonic()
frame = json.loads(sys.argv[3])
labels = predictor.predict(np.zeros(frame['image'], np.uint8), np.full(frame['image'][:2], 10.0, np.float32),
                           np.array(frame['K']), np.array(frame['pose'])).labels
time.sleep(max(0.0, float(sys.argv[4]) - (time.monotonic() - started)))
print(json.dumps({'queries': queries, 'events': events, 'labels': list(labels.shape),
                  'variable': os.environ.get('ORT_DISABLE_TELEMETRY')}))
"""
AUDITED_SECONDS = 15   # ONNX Runtime 1.32's telemetry resolves its host ~10 s after start


def name_servers() -> list[str]:
    """The resolver's name servers (glibc asks 127.0.0.1 when none is listed)."""
    try:
        lines = Path('/etc/resolv.conf').read_text().splitlines()
    except OSError:
        lines = []
    servers = [line.split()[1] for line in lines if line.startswith('nameserver') and len(line.split()) > 1]
    return servers or ['127.0.0.1']


@pytest.fixture(scope='module')
def offline_session(tmp_path_factory):
    """A session of ours on the contract model, audited for 15 s after it starts, in a child
    process in a private network namespace whose name servers are the child's own listeners;
    started first, so that its wait overlaps the hostile files' child. Yields (the child, the
    folders given as HOME, XDG_CACHE_HOME and TMPDIR), or None without a namespace."""
    import shutil
    if shutil.which('unshare') is None or shutil.which('ip') is None or subprocess.run(
            ['unshare', '-n', 'true'], capture_output=True).returncode:
        yield None
        return
    directory = tmp_path_factory.mktemp('offline')
    path = contract_onnx(directory / 'contract.onnx')
    homes = {name: directory / name for name in ('HOME', 'XDG_CACHE_HOME', 'TMPDIR')}
    for folder in homes.values():
        folder.mkdir()
    env = {k: v for k, v in os.environ.items() if k != 'ORT_DISABLE_TELEMETRY'}
    env.update({k: str(v) for k, v in homes.items()},
               PYTHONPATH=f'{REPO}{os.pathsep}{os.environ.get("PYTHONPATH", "")}')
    servers = name_servers()
    addresses = ' && '.join(f'(ip addr add {a}/{128 if ":" in a else 32} dev lo 2>/dev/null || true)'
                            for a in servers)
    frame = {'image': [*SMALL.image_shape, 3], 'K': SMALL.cam_K, 'pose': SMALL.cam_from_grid}
    child = subprocess.Popen(
        ['unshare', '-n', 'bash', '-c', f'ip link set lo up && {addresses} && exec "$@"', 'child',
         sys.executable, '-c', OFFLINE_CHILD, str(path), json.dumps(servers), json.dumps(frame),
         str(AUDITED_SECONDS)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
        cwd=REPO)
    yield child, homes
    child.kill()
    child.communicate()


@pytest.fixture(scope='module')
def hostile(tmp_path_factory, offline_session):
    """Every attack file, loaded by one child process: its report and the hub's requests.
    (``offline_session`` only starts first: its 15 s of auditing overlap this child.)"""
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
    covered = {item for item, *_ in ATTACKS.values()}
    assert covered >= {(13, i) for i in range(1, 9)} | {(23, i) for i in (1, 2, 3, 4, 6, 7, 8, 9, 10)}
    # issue 23 item 5 (ONNX Runtime's telemetry): test_onnxruntime_stays_offline


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


@pytest.mark.parametrize('name, match', [
    ('parameter_state_numel', r"tensor 'decoder.cls_head.2.bias': views 1000000000000 elements"),
    ('parameter_state_untyped_storage', r'views 1000000000000 elements'),
    ('parameter_state_detach', r'views 1000000000000 elements'),
    ('ordered_dict_build_get', r'cannot tell which preset the weights are for'),
    ('ordered_dict_build_items', r'cannot tell which preset the weights are for')])
def test_loader_calls_no_method_the_file_set(tmp_path, monkeypatch, name, match):
    """Behind the dry run: were the attributes set (the dry run switched off here), the loader
    still reads the objects with their real classes' methods, so the file changes nothing."""
    from ssc_core import torch_archive
    monkeypatch.setattr(torch_archive, '_dry_run', lambda pickle_bytes: ({}, pickle_bytes))
    path = ATTACKS[name][1](tmp_path)
    with pytest.raises(CheckpointError, match=match):
        load_model(path)


def test_contract_model_passes_every_check_and_runs(tmp_path):
    """The base of the ONNX attacks is a model an export could be: it loads and predicts."""
    from ssc_core.predictor import Predictor
    predictor = Predictor.from_checkpoint(contract_onnx(tmp_path / 'contract.onnx'),
                                          backend='onnxruntime')
    prediction = predictor.predict(*onnx_frame())
    assert prediction.labels.shape == SMALL.model.scene_shape and not prediction.labels.any()


def onnx_frame():
    """A frame for the small preset: image, depth, K, cam_from_grid."""
    import numpy as np
    height, width = SMALL.image_shape
    image = np.random.default_rng(0).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return (image, np.full((height, width), 10.0, np.float32), np.array(SMALL.cam_K),
            np.array(SMALL.cam_from_grid))


def test_onnxruntime_gives_no_labels_from_non_finite_logits(tmp_path):
    from ssc_core.predictor import NonFiniteOutput, Predictor

    def infinite(graph, helper, TensorProto):
        graph.initializer.append(helper.make_tensor('zero', TensorProto.FLOAT, [], [0.0]))
        graph.node.insert(1, helper.make_node('Div', ['total', 'zero'], ['infinite']))
        graph.node[2].input[0] = 'infinite'   # Reshape(infinite, rank5)
    predictor = Predictor.from_checkpoint(contract_onnx(tmp_path / 'inf.onnx', infinite),
                                          backend='onnxruntime')
    with pytest.raises(NonFiniteOutput, match='NaN or inf logits for frame 0 of 1'):
        predictor.predict(*onnx_frame())


def test_onnxruntime_checks_each_output_shape(tmp_path, monkeypatch):
    """Labels whose size depends on the input (cut to the count of voxels in view), declared
    as the preset's: refused when the file is read (NonZero is no exported operator since the
    export is static), and, were it admitted, refused at run time, not returned."""
    import numpy as np

    from ssc_core.backends import onnx_model
    from ssc_core.backends.onnxruntime_backend import OnnxRuntimeBackend

    def cut(graph, helper, TensorProto):
        graph.initializer.extend([helper.make_tensor('one', TensorProto.INT64, [1], [1]),
                                  helper.make_tensor('two', TensorProto.INT64, [1], [2]),
                                  helper.make_tensor('zero', TensorProto.INT64, [1], [0]),
                                  helper.make_tensor('last', TensorProto.INT64, [1], [3])])
        graph.node[-1].output[0] = 'all_labels'
        graph.node.extend([
            helper.make_node('NonZero', ['fov_mask'], ['in_view']),
            helper.make_node('Shape', ['in_view'], ['in_view_shape']),
            helper.make_node('Slice', ['in_view_shape', 'one', 'two'], ['count']),
            helper.make_node('Slice', ['all_labels', 'zero', 'count', 'last'], ['labels'])])
    path = contract_onnx(tmp_path / 'cut.onnx', cut)
    with pytest.raises(CheckpointError, match="operators an export never holds: 'NonZero'"):
        OnnxRuntimeBackend(path)
    monkeypatch.setattr(onnx_model, 'EXPORTED_OPS', onnx_model.EXPORTED_OPS | {'NonZero'})
    monkeypatch.setattr(onnx_model, 'DATA_DEPENDENT_OPS', frozenset({'NonZero'}))
    backend = OnnxRuntimeBackend(path)   # the run-time check is the last line
    points = backend.session.get_inputs()[-1].shape[1]
    inputs = {i.name: np.zeros(i.shape, {'tensor(int64)': np.int64, 'tensor(bool)': np.bool_}.get(
        i.type, np.float32)) for i in backend.session.get_inputs()}
    inputs['fov_mask'][0, :16] = True
    assert backend.run(inputs)[0].shape == (1, 128, 128, 16)   # 16 in view: the right shape
    inputs['fov_mask'][0, 2:] = False
    with pytest.raises(RuntimeError, match=r'returned labels uint8 \[1, 128, 128, 2\], its preset '
                       r'needs uint8 \[1, 128, 128, 16\]'):
        backend.run(inputs, want_logits=False)
    assert points == 32768


def test_onnxruntime_stays_offline(offline_session):
    """No DNS query reaches the listeners (ONNX Runtime's telemetry would ask for
    mobile.events.data.microsoft.com ~10 s after start), no socket or name lookup from Python,
    no file written, and HOME, XDG_CACHE_HOME and TMPDIR stay empty (its telemetry keeps a
    device id and an event database under ~/.cache/Microsoft and a session file in TMPDIR)."""
    if offline_session is None:
        pytest.skip('needs a private network namespace (unshare -n, ip) to watch name lookups')
    child, homes = offline_session
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report['labels'] == list(SMALL.model.scene_shape) and report['variable'] == '1'
    assert report['queries'] == [] and report['events'] == []
    assert {name: sorted(str(p.relative_to(folder)) for p in folder.rglob('*'))
            for name, folder in homes.items()} == {name: [] for name in homes}
