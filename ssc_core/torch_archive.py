"""Reading ``torch.save`` archives without running code from them, in bounded memory and time.

The objects are rebuilt by PyTorch's weights-only unpickler (what ``torch.load(weights_only=True)``
runs). Two checks come first, because that unpickler alone still lets a small file crash, hang,
exhaust the process or disarm the checks that follow: the archive's records (only stored or
deflated members, sizes that deflate can produce, one ``data.pkl`` of bounded size) and a dry
run of the pickle's opcodes that builds nothing. The dry run admits only the names this project
reads (tensors, plain containers, data classes of training checkpoints) and refuses what would
cost more than the file holds or change the objects the loader uses:

* a tuple nested deeper than :data:`MAX_TUPLE_DEPTH` or expanding to more than
  :data:`MAX_HASH_WORK` elements (hashing it recurses in C and can crash or hang);
* constructors called on existing containers (``set(x)`` of one list repeated copies it each
  time) and keys whose hashes the file can make collide (numbers beyond small integers,
  tuples: a dict of them can take quadratic time to build) beyond :data:`MAX_WORK` steps in all;
* calls that allocate from a number (``bytearray(n)``, tensor and storage constructors);
* state set on anything but data-class placeholders and an ``OrderedDict``'s ``_metadata``:
  tensors and parameters come without hooks or attributes.

Pickle protocols 2 to 5 are read (protocol 4 and 5 framing is inert; their opcodes are written
as the protocol-2 ones the unpickler reads, building the same objects). Classes of the data
packages (omegaconf, numpy, Lightning, ...) become inert placeholders that keep their arguments
and state and run none of their class's code. Each storage record is read once, at the size the
pickle declares, into memory no tensor can grow. Names taken from the file are quoted in every
message (:func:`~ssc_core.quoting.quote`).
"""
import io
import os
import pickletools
import struct
import sys
import threading
import zipfile
from array import array

import torch
from torch._utils import IMPORT_MAPPING, NAME_MAPPING
from torch._weights_only_unpickler import Unpickler as WeightsOnlyUnpickler
from torch.serialization import MAGIC_NUMBER, StorageType

from .quoting import quote

PICKLE_LIMIT = 16 * 2 ** 20       # bytes of data.pkl (a 700 MB Lightning checkpoint has ~0.5 MB)
MAX_OPCODES = 2_000_000           # the authors' Lightning checkpoint has ~0.2M
MAX_OBJECTS = 500_000             # containers, names, placeholders and memo entries
MAX_WORK = 1_000_000              # element copies, hashes and collision probes beyond the pickle's size
MAX_TUPLE_DEPTH = 32
MAX_HASH_WORK = 100_000           # elements hashed for one tuple
MAX_PLACEHOLDER_CLASSES = 1000
DEFLATE_MAX_RATIO = 1032          # the most output one deflated byte can give
MAX_EXPANSION = 32                # all members together, over the file's size (torch.save: 1x)
SAFE_INT_KEY = 2 ** 61 - 1        # integers below this in magnitude have distinct hashes

# Packages whose classes only carry data in a training checkpoint (hyper-parameters, callback
# state, numpy scalars): their objects become inert placeholders.
DATA_PACKAGES = ('omegaconf', 'numpy', 'lightning', 'pytorch_lightning', 'lightning_fabric',
                 'torchmetrics', 'pathlib', 'typing', 'enum', 'argparse', 'functools', 'datetime',
                 'hydra')
# Types that appear as values (omegaconf's metadata names int, str, dict...): never called.
VALUE_TYPES = {f'builtins.{t.__name__}': t
               for t in (int, float, str, bool, bytes, dict, list, tuple, object)}
_STORAGE_DTYPES = {'Float': torch.float32, 'Double': torch.float64, 'Half': torch.float16,
                   'BFloat16': torch.bfloat16, 'Long': torch.int64, 'Int': torch.int32,
                   'Short': torch.int16, 'Char': torch.int8, 'Byte': torch.uint8,
                   'Bool': torch.bool}
# What each admitted torch-side name may do in the pickle.
_ROLES = {
    'torch._utils._rebuild_tensor_v2': 'tensor',
    'torch._utils._rebuild_parameter': 'tensor',
    'torch._utils._rebuild_parameter_with_state': 'tensor',
    'collections.OrderedDict': 'container',
    'collections.Counter': 'container',
    'builtins.set': 'container',
    'torch.Size': 'call',
    'torch.device': 'call',
    '_codecs.encode': 'call',
    'builtins.complex': 'call',
    **{f'torch.{name}Storage': 'value' for name in _STORAGE_DTYPES},
    **{str(dtype): 'value' for dtype in _STORAGE_DTYPES.values()},
    **{name: 'value' for name in VALUE_TYPES},
}
# Each tensor rebuild's argument counts and where its hooks dict sits (torch.save writes an
# empty one).
_TENSOR_CALLS = {'torch._utils._rebuild_tensor_v2': ((6, 7), 5),
                 'torch._utils._rebuild_parameter': ((3,), 2),
                 'torch._utils._rebuild_parameter_with_state': ((4,), 2)}
# The state torch.save writes on an OrderedDict (a state dict's per-module versions).
_ORDERED_DICT_STATE = frozenset({'_metadata'})
# The first bytes of torch.save's legacy (not zip) format: its magic number, pickled.
_LEGACY_MAGIC = b'\x8a\x0a' + MAGIC_NUMBER.to_bytes(10, 'little')
_LOCK = threading.Lock()   # torch's allow-list of extra globals is process-wide


class ArchiveError(ValueError):
    """An archive that is not read: corrupt, or asking for more than plain data."""


def load_archive(path) -> 'ArchiveContents':
    """What ``torch.save`` stored at ``path`` (``.obj``), its storages on the CPU; take each
    tensor you use through :meth:`ArchiveContents.check_tensor`.

    Raises ArchiveError saying why the file is refused (no other exception escapes).
    """
    try:
        with open(path, 'rb') as file:
            if file.read(16)[2:14] == _LEGACY_MAGIC:
                raise ArchiveError("written in torch.save's legacy format "
                                   '(_use_new_zipfile_serialization=False), which is not read; '
                                   "save it again with torch.save's default (zip) format")
            file.seek(0)
            with zipfile.ZipFile(file) as archive:
                records = _check_records(archive, os.fstat(file.fileno()).st_size)
                pickle_bytes = _read_member(archive, records['data.pkl'],
                                            records['data.pkl'].file_size)
                placeholders, pickle_bytes = _dry_run(pickle_bytes)
                return _unpickle(pickle_bytes, placeholders, _Storages(archive, records))
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, EOFError) as e:
        raise ArchiveError(f'not a readable torch.save archive ({_describe(e)}); the file may be '
                           'truncated or corrupt') from None
    except MemoryError:
        raise ArchiveError('corrupt checkpoint (MemoryError while reading it)') from None
    except Exception as e:  # the unpickler's and torch's own refusals, of many types
        raise ArchiveError(f'corrupt checkpoint ({_describe(e)})') from None


def _describe(error: BaseException) -> str:
    text = f'{type(error).__name__}: {error}'.splitlines()[0] if str(error) else type(error).__name__
    return text if len(text) <= 300 else text[:297] + '...'


# --------------------------------------------------------------------------- archive records
def _check_records(archive: zipfile.ZipFile, file_size: int) -> dict[str, zipfile.ZipInfo]:
    """Records by their name under the archive's folder; refuses what torch.save never writes
    and members that claim more bytes than the file holds or deflate can produce."""
    infos = archive.infolist()
    names = [i.filename for i in infos]
    if len(set(names)) != len(names):
        raise ArchiveError('the archive lists a member twice')
    pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
    if len(pickles) != 1:
        raise ArchiveError(f'not a torch.save archive (expected one <folder>/data.pkl, found '
                           f'{len(pickles)})')
    prefix = pickles[0][:-len('data.pkl')]
    records = {}
    for info in infos:
        member = f'member {quote(info.filename)}'
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveError(f'{member} uses compression method {info.compress_type}; only '
                               'stored or deflated members are read')
        if info.flag_bits & 0x1:
            raise ArchiveError(f'{member} is encrypted')
        limit = info.compress_size * (DEFLATE_MAX_RATIO if info.compress_type else 1)
        if info.file_size > limit + 64:
            raise ArchiveError(f'{member} claims {info.file_size} bytes from '
                               f'{info.compress_size} stored bytes (corrupt)')
        if info.header_offset + info.compress_size > file_size:
            raise ArchiveError(f'{member} reaches past the end of the file (truncated?)')
        if info.filename.startswith(prefix):
            records[info.filename[len(prefix):]] = info
    expanded = sum(info.file_size for info in infos)
    if expanded > MAX_EXPANSION * file_size + 2 ** 20:
        raise ArchiveError(f'the members expand to {expanded} bytes from a file of {file_size} '
                           f'(more than {MAX_EXPANSION}x; a decompression bomb)')
    if records['data.pkl'].file_size > PICKLE_LIMIT:
        raise ArchiveError(f'data.pkl holds {records["data.pkl"].file_size} bytes, more than the '
                           f'{PICKLE_LIMIT} a checkpoint needs')
    if 'byteorder' in records:
        info = records['byteorder']
        order = _read_member(archive, info, min(info.file_size, 16)).decode('ascii', 'replace')
        if order != sys.byteorder:
            raise ArchiveError(f'written on a {quote(order, 16)}-endian machine; only '
                               f'{sys.byteorder}-endian archives are read')
    return records


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> bytearray:
    """Exactly ``size`` bytes of a member (its CRC checked), or ArchiveError."""
    if info.file_size != size:
        raise ArchiveError(f'member {quote(info.filename)} holds {info.file_size} bytes, '
                           f'expected {size}')
    data = bytearray(size)
    with archive.open(info) as member:
        got = member.readinto(data) if size else 0
        if got != size or member.read(1):
            raise ArchiveError(f'member {quote(info.filename)} is truncated or corrupt')
    return data


class _Storages:
    """``persistent_load`` for the unpickler: each storage record read once, not resizable."""

    def __init__(self, archive: zipfile.ZipFile, records: dict[str, zipfile.ZipInfo]):
        self.archive, self.records = archive, records
        self.loaded: dict[str, torch.storage.TypedStorage] = {}
        self.declared_bytes: dict[int, int] = {}   # data_ptr → bytes of its record

    def __call__(self, pid):
        if not (type(pid) is tuple and len(pid) == 5 and type(pid[0]) is str and pid[0] == 'storage'
                and type(pid[2]) is str and type(pid[4]) is int and pid[4] >= 0):
            raise ArchiveError('unsupported persistent id in the pickle (expected a storage)')
        storage_type, key, _, numel = pid[1:]
        if isinstance(storage_type, StorageType):
            dtype = storage_type.dtype
        else:
            raise ArchiveError(f'storage {quote(key, 40)}: unsupported storage type')
        if key in self.loaded:
            return self.loaded[key]
        record = self.records.get(f'data/{key}')
        if record is None:
            raise ArchiveError(f'storage {quote(key, 40)} is missing from the archive '
                               '(truncated file?)')
        nbytes = numel * torch._utils._element_size(dtype)
        if record.file_size != nbytes:
            raise ArchiveError(f'storage {quote(key, 40)}: the archive record holds '
                               f'{record.file_size} bytes, the pickle declares {nbytes}')
        # A 1-byte buffer stands in for an empty record: frombuffer needs one, and the memory of
        # a buffer-backed storage can never be resized into uninitialised bytes.
        raw = _read_member(self.archive, record, nbytes) or bytearray(1)
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage()
        self.declared_bytes[untyped.data_ptr()] = nbytes
        typed = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        self.loaded[key] = typed
        return typed


def _unpickle(pickle_bytes: bytes | bytearray, placeholders: dict[str, type], storages: _Storages):
    unpickler = WeightsOnlyUnpickler(io.BytesIO(pickle_bytes), encoding='utf-8')
    unpickler.persistent_load = storages
    extra = [(cls, name) for name, cls in (placeholders | VALUE_TYPES).items()]
    with _LOCK, torch.serialization.safe_globals(extra):
        obj = unpickler.load()
    return ArchiveContents(obj, storages.declared_bytes)


class ArchiveContents:
    """What :func:`load_archive` read: ``obj``, and the record size behind each storage.

    ``obj`` and what it holds were built from the file: read them with the methods of their
    exact types (``dict.items(x)`` after ``type(x) is dict``), never with their own.
    """

    def __init__(self, obj, declared_bytes: dict[int, int]):
        self.obj, self._declared_bytes = obj, declared_bytes

    def check_tensor(self, name: str, tensor) -> torch.Tensor:
        """A new plain CPU tensor over ``tensor``'s data, viewing only bytes of its storage
        record, or ArchiveError. ``name`` is for messages (quoted there)."""
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter):
            raise ArchiveError(f'tensor {quote(name)}: not a tensor')
        tensor = torch.Tensor.detach(tensor)   # an object of ours: no attributes from the file
        if tensor.layout != torch.strided or tensor.device.type != 'cpu' or tensor.is_quantized:
            raise ArchiveError(f'tensor {quote(name)}: not a plain CPU tensor')
        declared = self._declared_bytes.get(tensor.untyped_storage().data_ptr())
        if declared is None:
            raise ArchiveError(f'tensor {quote(name)}: its data is not a storage record of the '
                               'archive')
        size = tensor.element_size()
        extent = tensor.storage_offset() + sum((n - 1) * s for n, s in
                                               zip(tensor.shape, tensor.stride()))
        if tensor.numel() and ((extent + 1) * size > declared or tensor.numel() * size > declared):
            raise ArchiveError(f'tensor {quote(name)}: views {tensor.numel()} elements of {size} '
                               f'bytes over a storage record of {declared} bytes')
        return tensor


# --------------------------------------------------------------------------- dry run
class _Sym:
    """What the dry run knows of one object.

    kind, name (of a global), text (of a short string), size; hash_work: the cost of hashing it
    (a tuple's own hash; for a container, hashing its items again as keys); free_hash: the file
    chooses its hash (floats, large integers, tuples: unequal keys of one hash are possible);
    free_keys: its items or keys with a free hash; first_free: its first item has one (as a
    pair handed to OrderedDict); free_pairs: its items with a free first item; keys: the texts
    of a dict's keys while they are a few short strings (else None); frozen: a dict a tensor
    holds as its hooks, which nothing may fill.
    """
    __slots__ = ('depth', 'first_free', 'free_hash', 'free_keys', 'free_pairs', 'frozen',
                 'hash_work', 'items', 'keys', 'kind', 'name', 'role', 'size', 'text')

    def __init__(self, kind, name=None, role=None, size=0, hash_work=0, depth=0, items=(),
                 text=None, free_hash=False):
        self.kind, self.name, self.role, self.size, self.text = kind, name, role, size, text
        self.hash_work, self.depth, self.items = hash_work, depth, items
        self.free_hash, self.free_keys, self.first_free, self.free_pairs = free_hash, 0, False, 0
        self.keys = frozenset() if kind == 'dict' else None
        self.frozen = False


_LEAF = _Sym('leaf')
_NONE = _Sym('leaf')
_FREE_LEAF = _Sym('leaf', free_hash=True)


def _global_name(module: str, name: str) -> str:
    """A global's module and name → ``module.name`` as torch's unpickler resolves it."""
    if (module, name) in NAME_MAPPING:
        module, name = NAME_MAPPING[(module, name)]
    elif module in IMPORT_MAPPING:
        module = IMPORT_MAPPING[module]
    return f'{module}.{name}'


def _role(full_name: str) -> str:
    if full_name in _ROLES:
        return _ROLES[full_name]
    if full_name.split('.')[0] in DATA_PACKAGES or full_name == 'collections.defaultdict':
        return 'inert'
    raise ArchiveError(f'refusing to load: the file refers to {quote(full_name, 200)}, which is '
                       'not among the names a checkpoint is read with (an unknown name could run '
                       'code when unpickled)')


class _Inert:
    """Placeholder for an object of a data class: keeps its arguments and state, runs nothing."""
    __slots__ = ('args', 'state')

    def __new__(cls, *args, **kwargs):
        obj = object.__new__(cls)
        obj.args, obj.state = args, None
        return obj

    def __init__(self, *args, **kwargs):
        pass

    def __setstate__(self, state):
        self.state = state


def _placeholder(full_name: str) -> type:
    module, _, name = full_name.rpartition('.')
    return type(name, (_Inert,), {'__module__': f'inert.{module}', '__slots__': ()})


def _tuple(items: list) -> _Sym:
    hash_work, depth, free_keys, free_pairs = len(items), 0, 0, 0
    for item in items:
        if item.kind == 'tuple':
            hash_work += item.hash_work
            depth = max(depth, item.depth)
        free_keys += item.free_hash
        free_pairs += item.first_free
    depth += 1
    if depth > MAX_TUPLE_DEPTH or hash_work > MAX_HASH_WORK:
        raise ArchiveError(f'refusing to load: a tuple nested {depth} deep expanding to '
                           f'{hash_work} elements (hashing it could crash or hang the process)')
    sym = _Sym('tuple', size=len(items), hash_work=hash_work, depth=depth, items=tuple(items),
               free_hash=True)
    sym.free_keys, sym.free_pairs = free_keys, free_pairs
    sym.first_free = bool(items) and items[0].free_hash
    return sym


def _latin1_bytes(args: _Sym) -> bool:
    """Whether ``_codecs.encode`` is called as protocol 2 writes bytes: (text, 'latin1')."""
    return len(args.items) == 2 and args.items[0].kind == 'str' \
        and args.items[1].text in ('latin1', 'latin-1')


def _is_empty_dict(sym: _Sym) -> bool:
    return sym.kind == 'dict' and sym.size == 0


def _check_tensor_call(func: _Sym, args: _Sym) -> None:
    """A tensor or parameter is rebuilt as torch.save writes it: no hooks, no attribute state
    (``_rebuild_parameter_with_state`` would set any attribute the file names on it)."""
    name = func.name
    counts, hooks_index = _TENSOR_CALLS[name]
    if len(args.items) not in counts:
        raise ArchiveError(f'refusing to load: {name} called with {len(args.items)} arguments')
    hooks = args.items[hooks_index]
    if not _is_empty_dict(hooks):
        raise ArchiveError(f'refusing to load: a tensor with backward hooks ({name}; torch.save '
                           'writes an empty dict)')
    hooks.frozen = True
    if name == 'torch._utils._rebuild_parameter_with_state':
        state = args.items[3]
        parts = state.items if state.kind == 'tuple' and state.size == 2 else (state,)
        if not all(p is _NONE or _is_empty_dict(p) for p in parts):
            raise ArchiveError('refusing to load: a parameter with attribute state (it would set '
                               'attributes on the tensor; only plain tensors are read)')
        for part in parts:
            part.frozen = True


def _key_collisions(func: _Sym, source: _Sym | None) -> int:
    """Keys with a free hash that ``func(source)`` (OrderedDict, Counter, set) inserts."""
    if source is None:
        return 0
    if func.name == 'collections.OrderedDict' and source.kind in ('list', 'tuple'):
        return source.free_pairs
    return source.free_keys


def _collision_error(count: int) -> ArchiveError:
    return ArchiveError(f'refusing to load: a dict or set of {count} keys whose hashes the file '
                        'chooses (numbers or tuples; if they collide, building it takes quadratic '
                        'time, a hang)')


class _Protocol2:
    """The pickle rewritten, opcode by opcode, in the protocol-2 opcodes torch's weights-only
    unpickler reads, building the same objects: FRAME dropped, SHORT_BINUNICODE and
    BINUNICODE8 as BINUNICODE, MEMOIZE as LONG_BINPUT of its index, bytes as
    ``_codecs.encode(text, 'latin1')`` (as protocol 2 writes them), STACK_GLOBAL as GLOBAL.

    STACK_GLOBAL takes two strings pushed just before it (only memo writes can lie between):
    their pushes are taken back, and a memo entry written from them is re-pushed as a literal
    wherever it is read later.
    """

    def __init__(self):
        self.out = bytearray(b'\x80\x02')
        self.starts = array('q')   # where each written fragment starts in ``out``
        self.puts = array('q')     # the memo index a fragment writes, or -1
        self.literals: dict[int, str] = {}

    def write(self, fragment: bytes, put: int = -1) -> None:
        self.starts.append(len(self.out))
        self.puts.append(put)
        self.out += fragment
        if put >= 0:
            self.literals.pop(put, None)

    def put(self, index: int) -> None:
        self.write(b'r' + struct.pack('<I', index), put=index)

    def get(self, index: int) -> int:
        """Read memo ``index``; returns the bytes a literal re-push costs."""
        if index in self.literals:
            self.write(_unicode(self.literals[index]))
            return len(self.literals[index])
        self.write(b'j' + struct.pack('<I', index))
        return 0

    def string(self, text: str) -> None:
        self.write(_unicode(text))

    def binary(self, data: bytes) -> None:
        self.write(b'c_codecs\nencode\n' + _unicode(data.decode('latin1')) + _unicode('latin1')
                   + b'\x86R')

    def stack_global(self, module: str, name: str) -> None:
        for text in (name, module):
            while self.puts and self.puts[-1] >= 0:
                self.literals[self.puts[-1]] = text
                self._take_back()
            self._take_back()
        self.write(b'c' + f'{module}\n{name}\n'.encode())

    def _take_back(self) -> None:
        del self.out[self.starts.pop():]
        self.puts.pop()


def _unicode(text: str) -> bytes:
    data = text.encode('utf-8', 'surrogatepass')
    return b'X' + struct.pack('<I', len(data)) + data


_STRINGS = ('BINUNICODE', 'SHORT_BINSTRING', 'SHORT_BINUNICODE', 'BINUNICODE8')
_BYTES = ('SHORT_BINBYTES', 'BINBYTES', 'BINBYTES8')


def _dry_run(pickle_bytes: bytearray) -> tuple[dict[str, type], bytes | bytearray]:
    """Walk the pickle's opcodes building nothing; refuse what the unpickler must not do.

    Returns a placeholder class for each data-class name the pickle uses, and the pickle as
    protocol 2 (itself when it is protocol 2).
    """
    stack: list[_Sym] = []
    marks: list[list[_Sym]] = []
    memo: dict[int, _Sym] = {}
    placeholders: dict[str, type] = {}
    objects = 0
    work_limit = MAX_WORK + len(pickle_bytes)
    work = 0
    data = bytes(pickle_bytes)
    rewrite = _Protocol2() if data[:1] == b'\x80' and len(data) > 1 and data[1] > 2 else None
    ops = pickletools.genops(data)
    previous = None

    def pop_mark() -> list[_Sym]:
        nonlocal stack
        items, stack = stack, marks.pop()
        return items

    def insert(target: _Sym, kinds: tuple[str, ...], items: list[_Sym], keys: list[_Sym],
               what: str) -> None:
        """``items`` go into ``target``; ``keys`` are hashed into it (a list's items would be,
        were it made a set)."""
        nonlocal work
        if target.kind not in kinds:
            raise ArchiveError(f'refusing to load: {what} on a {target.kind}')
        if target.frozen:
            raise ArchiveError("refusing to load: the pickle fills a tensor's hooks after "
                               'building the tensor')
        if target.size == 0 and items:
            target.first_free = items[0].free_hash
        target.size += len(items)
        target.free_pairs += sum(i.first_free for i in items)
        hashed = items if target.kind == 'list' else keys
        added = sum(k.hash_work for k in hashed)
        target.hash_work += added   # what hashing its items again would cost
        work += len(items) + added
        _check_budget(count, objects, work, work_limit)
        for key in hashed:
            if key.free_hash:
                if target.kind == 'dict':
                    work += target.free_keys   # worst case: it collides with each earlier one
                    if work > work_limit:
                        raise _collision_error(target.free_keys + 1)
                target.free_keys += 1
        if target.keys is not None:
            texts = {k.text for k in keys}
            target.keys = None if None in texts or len(target.keys | texts) > 8 else \
                target.keys | texts

    for count, (op, arg, position) in enumerate(ops):
        _check_budget(count, objects, work, work_limit)
        code = op.name
        if rewrite is not None and previous is not None:
            rewrite.write(data[previous:position])
        previous = None
        if op.proto > 2 and rewrite is None:
            raise ArchiveError(f'refusing to load: pickle opcode {code} in a protocol-2 pickle')
        if code == 'PROTO':
            if arg > 5:
                raise ArchiveError(f'refusing to load: pickle protocol {arg} (2 to 5 are read)')
        elif code in ('STOP', 'FRAME'):
            pass
        elif code == 'MARK':
            marks.append(stack)
            stack = []
            objects += 1
        elif code == 'NONE':
            stack.append(_NONE)
        elif code in ('NEWFALSE', 'NEWTRUE', 'BININT', 'BININT1', 'BININT2'):
            stack.append(_LEAF)
        elif code == 'LONG1':
            stack.append(_LEAF if abs(arg) < SAFE_INT_KEY else _FREE_LEAF)
        elif code == 'BINFLOAT':
            stack.append(_FREE_LEAF)
        elif code in _STRINGS:
            stack.append(_Sym('str', text=arg if len(arg) <= 256 else None, size=len(arg)))
            if rewrite is not None:
                rewrite.string(arg)
                continue
        elif code in _BYTES:
            stack.append(_Sym('bytes', size=len(arg)))
            if rewrite is not None:
                rewrite.binary(arg)
                continue
        elif code in ('EMPTY_LIST', 'EMPTY_DICT', 'EMPTY_SET'):
            stack.append(_Sym({'EMPTY_LIST': 'list', 'EMPTY_DICT': 'dict',
                               'EMPTY_SET': 'set'}[code]))
            objects += 1
        elif code == 'EMPTY_TUPLE':
            stack.append(_tuple([]))
        elif code in ('TUPLE1', 'TUPLE2', 'TUPLE3'):
            n = int(code[-1])
            items = stack[-n:]
            if len(items) != n:
                raise ArchiveError('corrupt pickle (stack underflow)')
            stack[-n:] = [_tuple(items)]
            objects += 1
        elif code == 'TUPLE':
            stack_items = pop_mark()
            stack.append(_tuple(stack_items))
            objects += 1
        elif code == 'APPEND':
            item = stack.pop()
            insert(stack[-1], ('list',), [item], [], 'APPEND')
        elif code == 'APPENDS':
            items = pop_mark()
            insert(stack[-1], ('list',), items, [], 'APPENDS')
        elif code == 'SETITEM':
            value, key = stack.pop(), stack.pop()
            insert(stack[-1], ('dict',), [key], [key], 'SETITEM')
            del value
        elif code == 'SETITEMS':
            items = pop_mark()
            insert(stack[-1], ('dict',), items[0::2], items[0::2], 'SETITEMS')
        elif code in ('BINPUT', 'LONG_BINPUT', 'MEMOIZE'):
            index = len(memo) if code == 'MEMOIZE' else arg
            memo[index] = stack[-1]
            objects += 1
            if rewrite is not None:
                rewrite.put(index)
                continue
        elif code in ('BINGET', 'LONG_BINGET'):
            if arg not in memo:
                raise ArchiveError(f'corrupt pickle (memo {arg} read before it is written)')
            stack.append(memo[arg])
            if rewrite is not None:
                work += rewrite.get(arg)
                continue
        elif code in ('GLOBAL', 'STACK_GLOBAL'):
            if code == 'STACK_GLOBAL':
                name, module = stack.pop(), stack.pop()
                if module.kind != 'str' or name.kind != 'str' or None in (module.text, name.text):
                    raise ArchiveError('refusing to load: STACK_GLOBAL of something other than '
                                       'two short strings')
                rewrite.stack_global(module.text, name.text)
                full_name = _global_name(module.text, name.text)
            else:
                full_name = _global_name(*arg.split(' ', 1))
            role = _role(full_name)
            if role == 'inert' and full_name not in placeholders:
                if len(placeholders) >= MAX_PLACEHOLDER_CLASSES:
                    raise ArchiveError('refusing to load: the pickle names more classes than a '
                                       'checkpoint holds')
                placeholders[full_name] = _placeholder(full_name)
            stack.append(_Sym('global', name=full_name, role=role, size=len(full_name)))
            objects += 1
            if code == 'STACK_GLOBAL':
                continue
        elif code in ('REDUCE', 'NEWOBJ'):
            args, func = stack.pop(), stack.pop()
            role = func.role
            allowed = ('inert',) if code == 'NEWOBJ' else ('inert', 'tensor', 'container', 'call')
            if role not in allowed or args.kind != 'tuple' or (
                    func.name == '_codecs.encode' and not _latin1_bytes(args)):
                what = quote(func.name, 200) if func.name else 'a ' + func.kind
                raise ArchiveError(f'refusing to load: the pickle calls {what} (only tensors, '
                                   'plain containers and data classes are read)')
            if role == 'tensor':
                _check_tensor_call(func, args)
            size = sum(i.size for i in args.items)
            hash_work = sum(i.hash_work for i in args.items)
            if role in ('container', 'call'):
                work += size + (hash_work if role == 'container' else 0)
                _check_budget(count, objects, work, work_limit)
            kind = {'container': 'set' if func.name == 'builtins.set' else 'dict',
                    'tensor': 'tensor', 'call': 'value', 'inert': 'object'}[role]
            sym = _Sym(kind, name=func.name, size=size,
                       hash_work=hash_work if role == 'container' else 0,
                       free_hash=role == 'call' and func.name != '_codecs.encode')
            if role == 'container':
                sym.free_keys = _key_collisions(func, args.items[0] if args.items else None)
                sym.keys = frozenset() if size == 0 and kind == 'dict' else None
                work += sym.free_keys * (sym.free_keys - 1) // 2
                if work > work_limit:
                    raise _collision_error(sym.free_keys)
            stack.append(sym)
            objects += 1
        elif code == 'BUILD':
            state, target = stack.pop(), stack[-1]
            if target.kind == 'object':
                pass   # a placeholder keeps its state
            elif target.name == 'collections.OrderedDict' and not target.frozen:
                if state.kind != 'dict' or state.keys is None or state.keys - _ORDERED_DICT_STATE:
                    raise ArchiveError('refusing to load: the pickle sets attributes of an '
                                       'OrderedDict other than the _metadata torch.save writes')
            else:
                raise ArchiveError(f'refusing to load: the pickle sets the state of a '
                                   f'{target.kind} (only data-class placeholders and an '
                                   "OrderedDict's _metadata take state)")
            work += state.size
        elif code == 'BINPERSID':
            stack.pop()
            stack.append(_Sym('storage'))
        elif code in ('ADDITEMS', 'FROZENSET'):
            raise ArchiveError(f'refusing to load: a set written with pickle protocol 4 or 5 '
                               f'({code}); protocol 2, the default of torch.save, writes sets '
                               'that are read')
        else:
            raise ArchiveError(f'refusing to load: unsupported pickle opcode {code}')
        if rewrite is not None and code not in ('PROTO', 'FRAME'):
            previous = position
    _check_budget(0, objects, work, work_limit)
    if rewrite is None:
        return placeholders, pickle_bytes
    if previous is not None:   # STOP
        rewrite.write(data[previous:previous + 1])
    return placeholders, bytes(rewrite.out)


def _check_budget(opcodes: int, objects: int, work: int, work_limit: int) -> None:
    if opcodes >= MAX_OPCODES or objects > MAX_OBJECTS or work > work_limit:
        raise ArchiveError(f'refusing to load: the pickle asks for more than a checkpoint needs '
                           f'({opcodes} opcodes, {objects} objects, {work} element copies; a '
                           'memory or time bomb)')
