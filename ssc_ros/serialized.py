"""ROS messages serialized from numpy arrays, without a Python object per element.

rclpy publishes ``bytes`` as an already-serialized message (``Publisher.publish(bytes)``) and
reads them back with :func:`rclpy.serialization.deserialize_message`. :func:`serialize` writes a
message in the CDR that rclpy writes (little-endian XCDR1, primitives aligned to their size from
the start of the payload), walking the message's rosidl type description; any sequence field can
be given as a numpy array instead (``arrays``), written as its bytes. Alignment padding is zero,
so the same message always gives the same bytes (rclpy's own serializer leaves heap bytes there).
"""
import importlib
import struct

import numpy as np
from rosidl_parser import definition

CDR_LE = b'\x00\x01\x00\x00'   # encapsulation: little-endian CDR, no options
FORMATS = {'boolean': '?', 'octet': 'c', 'uint8': 'B', 'int8': 'b', 'uint16': 'H', 'int16': 'h',
           'uint32': 'I', 'int32': 'i', 'uint64': 'Q', 'int64': 'q', 'float': 'f', 'double': 'd'}
PACKERS = {name: struct.Struct('<' + code) for name, code in FORMATS.items()}
DTYPES = {name: np.dtype('S1' if code == 'c' else '<' + code) for name, code in FORMATS.items()}


def serialize(msg, arrays=()) -> bytes:
    """``msg`` as rclpy serializes it, with padding zeroed. ``arrays``: ``(message object, field
    name, array)`` triples; the array (little-endian, laid out as the elements) replaces the
    elements of that sequence field, e.g. ``(marker, 'points', centres)`` with centres (N, 3)
    float64 for a Point[]."""
    writer = _Writer(arrays)
    writer.message(msg)
    return CDR_LE + b''.join(writer.pieces)


class _Writer:
    def __init__(self, arrays):
        self.arrays = {(id(owner), name): array for owner, name, array in arrays}
        self.pieces = []
        self.offset = 0

    def _put(self, data, align: int = 1) -> None:
        pad = -self.offset % align
        if pad:
            self.pieces.append(bytes(pad))
        self.pieces.append(data)
        self.offset += pad + len(memoryview(data).cast('B'))

    def message(self, msg) -> None:
        for slot, kind in zip(msg.__slots__, msg.SLOT_TYPES):
            name = slot.lstrip('_')
            array = self.arrays.get((id(msg), name))
            self.value(getattr(msg, slot), kind, array)

    def value(self, value, kind, array=None) -> None:
        if isinstance(kind, definition.BasicType):
            packer = self._packer(kind)
            self._put(packer.pack(value), packer.size)
        elif isinstance(kind, definition.AbstractString):
            if isinstance(kind, definition.AbstractWString):
                raise TypeError('wstring fields are not supported')
            text = value.encode() + b'\0'
            self._put(len(text).to_bytes(4, 'little'), 4)
            self._put(text)
        elif isinstance(kind, definition.NamespacedType):
            self.message(value)
        elif isinstance(kind, definition.AbstractNestedType):
            if isinstance(kind, definition.AbstractSequence):
                self._put(len(array if array is not None else value).to_bytes(4, 'little'), 4)
            element = kind.value_type
            if array is not None:
                if len(array):
                    self._put(np.ascontiguousarray(array).data, self._first_alignment(element))
            elif isinstance(element, definition.BasicType):
                if len(value):
                    self._packer(element)
                    dtype = DTYPES[element.typename]
                    self._put(np.asarray(value, dtype).tobytes(), dtype.itemsize)
            else:
                for item in value:
                    self.value(item, element)
        else:
            raise TypeError(f'cannot serialize a field of type {kind!r}')

    @staticmethod
    def _packer(kind) -> struct.Struct:
        if kind.typename not in PACKERS:
            raise TypeError(f'cannot serialize a field of type {kind.typename}')
        return PACKERS[kind.typename]

    def _first_alignment(self, kind) -> int:
        """The alignment of an element's first primitive (where an array of such elements starts)."""
        while isinstance(kind, definition.NamespacedType):
            kind = _message_class(kind).SLOT_TYPES[0]
        if isinstance(kind, definition.BasicType):
            return self._packer(kind).size
        return 4   # a string's or sequence's length


def _message_class(kind: definition.NamespacedType):
    return getattr(importlib.import_module('.'.join(kind.namespaces)), kind.name)
