"""Reading ``torch.save`` archives without running code from them, in bounded memory and time.

The objects are rebuilt by PyTorch's weights-only unpickler (what ``torch.load(weights_only=True)``
runs). Two checks come first, because that unpickler alone still lets a small file crash or
exhaust the process: the archive's records (only stored or deflated members, sizes that
deflate can produce, one ``data.pkl`` of bounded size) and a dry run of the pickle's opcodes
that builds nothing. The dry run admits only the names this project reads (tensors, plain
containers, data classes of training checkpoints) and refuses what would cost more than the
file holds:

* a tuple nested deeper than :data:`MAX_TUPLE_DEPTH` or expanding to more than
  :data:`MAX_HASH_WORK` elements (hashing it recurses in C and can crash or hang);
* constructors called on existing containers (``set(x)`` of one list repeated copies it each
  time) beyond :data:`MAX_WORK` element copies in all;
* calls that allocate from a number (``bytearray(n)``, tensor and storage constructors).

Classes of the data packages (omegaconf, numpy, Lightning, ...) become inert placeholders that
keep their arguments and state and run none of their class's code. Each storage record is read
once, at the size the pickle declares, into memory no tensor can grow.
"""
import io
import os
import pickletools
import sys
import threading
import zipfile

import torch
from torch._utils import IMPORT_MAPPING, NAME_MAPPING
from torch._weights_only_unpickler import Unpickler as WeightsOnlyUnpickler
from torch.serialization import StorageType

PICKLE_LIMIT = 16 * 2 ** 20       # bytes of data.pkl (a 700 MB Lightning checkpoint has ~0.5 MB)
MAX_OPCODES = 2_000_000           # the authors' Lightning checkpoint has ~0.2M
MAX_OBJECTS = 500_000             # containers, names, placeholders and memo entries
MAX_WORK = 1_000_000              # element copies and hashes beyond the pickle's own size
MAX_TUPLE_DEPTH = 32
MAX_HASH_WORK = 100_000           # elements hashed for one tuple
MAX_PLACEHOLDER_CLASSES = 1000
DEFLATE_MAX_RATIO = 1032          # the most output one deflated byte can give
MAX_EXPANSION = 32                # all members together, over the file's size (torch.save: 1x)

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
_LOCK = threading.Lock()   # torch's allow-list of extra globals is process-wide


class ArchiveError(ValueError):
    """An archive that is not read: corrupt, or asking for more than plain data."""


def load_archive(path) -> 'ArchiveContents':
    """What ``torch.save`` stored at ``path`` (``.obj``), its storages on the CPU; check each
    tensor you use with :meth:`ArchiveContents.check_tensor`.

    Raises ArchiveError saying why the file is refused (no other exception escapes).
    """
    try:
        with open(path, 'rb') as file, zipfile.ZipFile(file) as archive:
            records = _check_records(archive, os.fstat(file.fileno()).st_size)
            pickle_bytes = _read_member(archive, records['data.pkl'], records['data.pkl'].file_size)
            placeholders = _dry_run(pickle_bytes)
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
        if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
            raise ArchiveError(f'member {info.filename[:100]} uses compression method '
                               f'{info.compress_type}; only stored or deflated members are read')
        if info.flag_bits & 0x1:
            raise ArchiveError(f'member {info.filename[:100]} is encrypted')
        limit = info.compress_size * (DEFLATE_MAX_RATIO if info.compress_type else 1)
        if info.file_size > limit + 64:
            raise ArchiveError(f'member {info.filename[:100]} claims {info.file_size} bytes from '
                               f'{info.compress_size} stored bytes (corrupt)')
        if info.header_offset + info.compress_size > file_size:
            raise ArchiveError(f'member {info.filename[:100]} reaches past the end of the file '
                               '(truncated?)')
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
            raise ArchiveError(f'written on a {order[:16]}-endian machine; only {sys.byteorder}-'
                               'endian archives are read')
    return records


def _read_member(archive: zipfile.ZipFile, info: zipfile.ZipInfo, size: int) -> bytearray:
    """Exactly ``size`` bytes of a member (its CRC checked), or ArchiveError."""
    if info.file_size != size:
        raise ArchiveError(f'member {info.filename[:100]} holds {info.file_size} bytes, '
                           f'expected {size}')
    data = bytearray(size)
    with archive.open(info) as member:
        got = member.readinto(data) if size else 0
        if got != size or member.read(1):
            raise ArchiveError(f'member {info.filename[:100]} is truncated or corrupt')
    return data


class _Storages:
    """``persistent_load`` for the unpickler: each storage record read once, not resizable."""

    def __init__(self, archive: zipfile.ZipFile, records: dict[str, zipfile.ZipInfo]):
        self.archive, self.records = archive, records
        self.loaded: dict[str, torch.storage.TypedStorage] = {}
        self.declared_bytes: dict[int, int] = {}   # data_ptr → bytes of its record

    def __call__(self, pid):
        if not (type(pid) is tuple and len(pid) == 5 and pid[0] == 'storage'
                and type(pid[2]) is str and type(pid[4]) is int and pid[4] >= 0):
            raise ArchiveError('unsupported persistent id in the pickle (expected a storage)')
        storage_type, key, _, numel = pid[1:]
        if isinstance(storage_type, StorageType):
            dtype = storage_type.dtype
        else:
            raise ArchiveError(f'storage {key[:40]}: unsupported storage type')
        if key in self.loaded:
            return self.loaded[key]
        record = self.records.get(f'data/{key}')
        if record is None:
            raise ArchiveError(f'storage {key[:40]} is missing from the archive (truncated file?)')
        nbytes = numel * torch._utils._element_size(dtype)
        if record.file_size != nbytes:
            raise ArchiveError(f'storage {key[:40]}: the archive record holds {record.file_size} '
                               f'bytes, the pickle declares {nbytes}')
        # A 1-byte buffer stands in for an empty record: frombuffer needs one, and the memory of
        # a buffer-backed storage can never be resized into uninitialised bytes.
        raw = _read_member(self.archive, record, nbytes) or bytearray(1)
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage()
        self.declared_bytes[untyped.data_ptr()] = nbytes
        typed = torch.storage.TypedStorage(wrap_storage=untyped, dtype=dtype, _internal=True)
        self.loaded[key] = typed
        return typed


def _unpickle(pickle_bytes: bytearray, placeholders: dict[str, type], storages: _Storages):
    unpickler = WeightsOnlyUnpickler(io.BytesIO(pickle_bytes), encoding='utf-8')
    unpickler.persistent_load = storages
    extra = [(cls, name) for name, cls in (placeholders | VALUE_TYPES).items()]
    with _LOCK, torch.serialization.safe_globals(extra):
        obj = unpickler.load()
    return ArchiveContents(obj, storages.declared_bytes)


class ArchiveContents:
    """What :func:`load_archive` read: ``obj``, and the record size behind each storage."""

    def __init__(self, obj, declared_bytes: dict[int, int]):
        self.obj, self._declared_bytes = obj, declared_bytes

    def check_tensor(self, name: str, tensor) -> torch.Tensor:
        """``tensor`` as a plain CPU tensor viewing only bytes of its record, or ArchiveError."""
        if type(tensor) not in (torch.Tensor, torch.nn.Parameter) or tensor.layout != torch.strided \
                or tensor.device.type != 'cpu' or tensor.is_quantized:
            raise ArchiveError(f'tensor {name}: not a plain CPU tensor')
        storage = tensor.untyped_storage()
        declared = self._declared_bytes.get(storage.data_ptr())
        if declared is None:
            raise ArchiveError(f'tensor {name}: its data is not a storage record of the archive')
        size = tensor.element_size()
        extent = tensor.storage_offset() + sum((n - 1) * s for n, s in
                                               zip(tensor.shape, tensor.stride()))
        if tensor.numel() and ((extent + 1) * size > declared or tensor.numel() * size > declared):
            raise ArchiveError(f'tensor {name}: views {tensor.numel()} elements of {size} bytes over '
                               f'a storage record of {declared} bytes')
        return tensor.detach()


# --------------------------------------------------------------------------- dry run
class _Sym:
    """What the dry run knows of one object: its kind, size and hashing cost (a tuple's own
    hash; for a container, hashing its items again as keys)."""
    __slots__ = ('depth', 'hash_work', 'items', 'kind', 'name', 'role', 'size')

    def __init__(self, kind, name=None, role=None, size=0, hash_work=0, depth=0, items=()):
        self.kind, self.name, self.role, self.size = kind, name, role, size
        self.hash_work, self.depth, self.items = hash_work, depth, items


_LEAF = _Sym('leaf')


def _global_name(arg: str) -> str:
    """``module name`` of a GLOBAL opcode → ``module.name`` as torch's unpickler resolves it."""
    module, _, name = arg.partition(' ')
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
    raise ArchiveError(f'refusing to load: the file refers to {full_name[:200]}, which is not '
                       'among the names a checkpoint is read with (an unknown name could run code '
                       'when unpickled)')


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
    hash_work = len(items) + sum(i.hash_work for i in items if i.kind == 'tuple')
    depth = 1 + max((i.depth for i in items), default=0)
    if depth > MAX_TUPLE_DEPTH or hash_work > MAX_HASH_WORK:
        raise ArchiveError(f'refusing to load: a tuple nested {depth} deep expanding to '
                           f'{hash_work} elements (hashing it could crash or hang the process)')
    return _Sym('tuple', size=len(items), hash_work=hash_work, depth=depth, items=tuple(items))


def _latin1_bytes(args: _Sym) -> bool:
    """Whether ``_codecs.encode`` is called as protocol 2 writes bytes: (text, 'latin1')."""
    return len(args.items) == 2 and args.items[0].kind == 'str' \
        and args.items[1].name in ('latin1', 'latin-1')


def _dry_run(pickle_bytes: bytearray) -> dict[str, type]:
    """Walk the pickle's opcodes building nothing; refuse what the unpickler must not do.

    Returns a placeholder class for each data-class name the pickle uses.
    """
    stack: list[_Sym] = []
    marks: list[list[_Sym]] = []
    memo: dict[int, _Sym] = {}
    placeholders: dict[str, type] = {}
    objects = 0
    work_limit = MAX_WORK + len(pickle_bytes)
    work = 0

    def pop_mark() -> list[_Sym]:
        nonlocal stack
        items, stack = stack, marks.pop()
        return items

    def insert(target: _Sym, kinds: tuple[str, ...], items: list[_Sym], what: str) -> None:
        nonlocal work
        if target.kind not in kinds:
            raise ArchiveError(f'refusing to load: {what} on a {target.kind}')
        added = sum(i.hash_work for i in items)
        target.size += len(items)
        target.hash_work += added   # what hashing its items again would cost
        work += len(items) + added

    for count, (op, arg, _) in enumerate(pickletools.genops(bytes(pickle_bytes))):
        _check_budget(count, objects, work, work_limit)
        code = op.name
        if code in ('PROTO', 'STOP'):
            continue
        if code == 'MARK':
            marks.append(stack)
            stack = []
            objects += 1
        elif code in ('NONE', 'NEWFALSE', 'NEWTRUE', 'BININT', 'BININT1', 'BININT2', 'BINFLOAT',
                      'LONG1'):
            stack.append(_LEAF)
        elif code in ('BINUNICODE', 'SHORT_BINSTRING'):
            stack.append(_Sym('str', name=arg if len(arg) <= 16 else None, size=len(arg)))
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
            insert(stack[-1], ('list',), [item], 'APPEND')
        elif code == 'APPENDS':
            items = pop_mark()
            insert(stack[-1], ('list',), items, 'APPENDS')
        elif code == 'SETITEM':
            value, key = stack.pop(), stack.pop()
            insert(stack[-1], ('dict',), [key], 'SETITEM')
            del value
        elif code == 'SETITEMS':
            items = pop_mark()
            insert(stack[-1], ('dict',), items[0::2], 'SETITEMS')
        elif code in ('BINPUT', 'LONG_BINPUT'):
            memo[arg] = stack[-1]
            objects += 1
        elif code in ('BINGET', 'LONG_BINGET'):
            if arg not in memo:
                raise ArchiveError(f'corrupt pickle (memo {arg} read before it is written)')
            stack.append(memo[arg])
        elif code == 'GLOBAL':
            full_name = _global_name(arg)
            role = _role(full_name)
            if role == 'inert' and full_name not in placeholders:
                if len(placeholders) >= MAX_PLACEHOLDER_CLASSES:
                    raise ArchiveError('refusing to load: the pickle names more classes than a '
                                       'checkpoint holds')
                placeholders[full_name] = _placeholder(full_name)
            stack.append(_Sym('global', name=full_name, role=role, size=len(full_name)))
            objects += 1
        elif code in ('REDUCE', 'NEWOBJ'):
            args, func = stack.pop(), stack.pop()
            role = func.role
            allowed = ('inert',) if code == 'NEWOBJ' else ('inert', 'tensor', 'container', 'call')
            if role not in allowed or args.kind != 'tuple' or (
                    func.name == '_codecs.encode' and not _latin1_bytes(args)):
                raise ArchiveError(f'refusing to load: the pickle calls '
                                   f'{func.name[:200] if func.name else "a " + func.kind} '
                                   '(only tensors, plain containers and data classes are read)')
            size = sum(i.size for i in args.items)
            hash_work = sum(i.hash_work for i in args.items)
            if role in ('container', 'call'):
                work += size + (hash_work if role == 'container' else 0)
            kind = {'container': 'set' if func.name == 'builtins.set' else 'dict',
                    'tensor': 'tensor', 'call': 'value', 'inert': 'object'}[role]
            stack.append(_Sym(kind, name=func.name, size=size,
                              hash_work=hash_work if role == 'container' else 0))
            objects += 1
        elif code == 'BUILD':
            state, target = stack.pop(), stack[-1]
            if target.kind != 'object' and target.name != 'collections.OrderedDict':
                raise ArchiveError(f'refusing to load: the pickle sets the state of a '
                                   f'{target.kind} (only data-class placeholders and '
                                   'OrderedDict attributes take state)')
            work += state.size
        elif code == 'BINPERSID':
            stack.pop()
            stack.append(_Sym('storage'))
        else:
            raise ArchiveError(f'refusing to load: unsupported pickle opcode {code}')
    _check_budget(0, objects, work, work_limit)
    return placeholders


def _check_budget(opcodes: int, objects: int, work: int, work_limit: int) -> None:
    if opcodes >= MAX_OPCODES or objects > MAX_OBJECTS or work > work_limit:
        raise ArchiveError(f'refusing to load: the pickle asks for more than a checkpoint needs '
                           f'({opcodes} opcodes, {objects} objects, {work} element copies; a '
                           'memory or time bomb)')
