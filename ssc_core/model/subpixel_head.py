"""The class head as sub-pixel products: the authors' layers, computed with less memory traffic.

The authors' head is ``ConvTranspose3d(k=3, padding=1, stride (1, 1, 2))`` → BN → ReLU (the Z
upsampling), ``ConvTranspose3d(k=3, padding=1, stride 2)`` → BN → ReLU, then a 1x1x1 conv. Run
as written on a CPU, the transposed convs write (B, 128, X, Y, Z) volumes that are reordered
and read again: over 1 GB moved several times at the SemanticKITTI size.

Along an axis with stride 2, output ``2m`` takes kernel tap 1 at input ``m`` and output
``2m + 1`` taps 2 and 0 at inputs ``m`` and ``m + 1``; with stride 1, output ``m`` takes taps
2, 1, 0 at inputs ``m - 1``, ``m``, ``m + 1``. So every output parity is a sum of matrix
products over the input voxels. With the input channels-last inside a zero border, an input
shift is a constant row offset: every product is one ``addmm`` on contiguous rows, BN is folded
into the weights, and the 1x1 conv runs per parity before anything 128 channels wide is written.

Exported graphs take the same decomposition as one small convolution per output parity
(:func:`phase_convolutions`): ONNX Runtime's CPU ``ConvTranspose`` computes the SemanticKITTI
head through a column buffer, 6 s and 4.4 GB of a full-size frame.
"""
import itertools

import torch
import torch.nn.functional as F
from torch import nn

from .chunks import CHUNK_BYTES

Layer = tuple[nn.ConvTranspose3d, nn.BatchNorm3d]


def supports(deconv: nn.ConvTranspose3d) -> bool:
    """Whether a transposed conv has a geometry :func:`class_head` computes: 3x3x3, padding 1,
    strides of 1 or 2 with output padding ``stride - 1``."""
    return (deconv.kernel_size == (3, 3, 3) and deconv.padding == (1, 1, 1)
            and all(s in (1, 2) for s in deconv.stride)
            and deconv.output_padding == tuple(s - 1 for s in deconv.stride)
            and deconv.groups == 1 and deconv.dilation == (1, 1, 1))


def fold_batchnorm(deconv: nn.ConvTranspose3d, bn: nn.BatchNorm3d, dtype: torch.dtype):
    """Eval-mode BN folded into a transposed conv → weight (3, 3, 3, C_in, C_out), bias (C_out,)."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    bias = deconv.bias if deconv.bias is not None else torch.zeros_like(bn.running_mean)
    weight = deconv.weight.permute(2, 3, 4, 0, 1) * scale
    return weight.to(dtype), ((bias - bn.running_mean) * scale + bn.bias).to(dtype)


def _low_border(strides) -> list[int]:
    """Zero voxels needed before the input on each axis: 1 where a stride-1 axis reads ``m - 1``."""
    return [1 if s == 1 else 0 for s in strides]


def _axis_phases(stride: int):
    """(output parity, ((input shift, kernel tap), ...)) of one axis."""
    if stride == 1:
        return ((0, ((-1, 2), (0, 1), (1, 0))),)
    return (0, ((0, 1),)), (1, ((0, 2), (1, 0)))


class _Bordered:
    """A zero-bordered channels-last buffer for an (X, Y, Z, C) volume: ``lo`` voxels before
    the data on each axis (1 where a stride-1 axis reads ``m - 1``), one after, and a spare X
    slab so that every shifted row range stays inside."""

    def __init__(self, shape, channels: int, lo, like: torch.Tensor, dtype: torch.dtype):
        self.shape, self.lo = tuple(shape), tuple(lo)
        nx, ny, nz = shape
        self.buffer = like.new_zeros((nx + lo[0] + 2, ny + lo[1] + 1, nz + lo[2] + 1, channels),
                                     dtype=dtype)

    @property
    def interior(self) -> torch.Tensor:
        (nx, ny, nz), (lx, ly, lz) = self.shape, self.lo
        return self.buffer[lx:lx + nx, ly:ly + ny, lz:lz + nz]

    def transposed_conv(self, weight, bias, strides):
        """relu(transposed conv + bias) of the interior, X slab by X slab → yields
        (parity (px, py, pz), input X range, rows): rows (n * Y' * Z', C_out) of the n input
        slices in the range, of which :meth:`rows_to_volume` gives the (n, Y, Z, C_out) outputs at
        ``out[px + sx * x0::sx, py::sy, pz::sz]``; ``weight`` (3, 3, 3, C_in, C_out) as
        :func:`fold_batchnorm`. A slab's rows stay under ``CHUNK_BYTES``."""
        _, yp, zp, c = self.buffer.shape
        rows = self.buffer.view(-1, c)
        row_strides = (yp * zp, zp, 1)
        nx = self.shape[0]
        slab = max(1, CHUNK_BYTES // (row_strides[0] * weight.shape[-1] * weight.element_size()))
        for phases in itertools.product(*(_axis_phases(s) for s in strides)):
            for x0 in range(0, nx, slab):
                n = min(slab, nx - x0)
                acc = None
                for taps in itertools.product(*(t for _, t in phases)):
                    offset = sum((lo + shift) * rs for (shift, _), lo, rs in zip(taps, self.lo, row_strides))
                    offset += x0 * row_strides[0]
                    src = rows[offset:offset + n * row_strides[0]]
                    w = weight[taps[0][1], taps[1][1], taps[2][1]]
                    acc = torch.addmm(bias, src, w) if acc is None else acc.addmm_(src, w)
                yield tuple(p for p, _ in phases), range(x0, x0 + n), acc.relu_()

    def rows_to_volume(self, rows: torch.Tensor) -> torch.Tensor:
        """(n * Y' * Z', C) rows from :meth:`transposed_conv` → the (n, Y, Z, C) voxels they belong to."""
        _, yp, zp, _ = self.buffer.shape
        _, ny, nz = self.shape
        return rows.view(-1, yp, zp, rows.shape[-1])[:, :ny, :nz]


def class_head(x: torch.Tensor, upsamplings: list[Layer], classifier: nn.Conv3d) -> torch.Tensor:
    """``classifier(up_n(... up_1(x)))`` in eval mode, each ``up = relu(bn(deconv))``, as
    sub-pixel GEMMs (see :func:`supports` for the deconvs it takes).

    x (B, C, X, Y, Z) → logits (B, K, X', Y', Z'); in autocast's dtype when it is on.
    """
    device = x.device.type
    dtype = torch.get_autocast_dtype(device) if torch.is_autocast_enabled(device) else x.dtype
    layers = [(*fold_batchnorm(deconv, bn, dtype), deconv.stride) for deconv, bn in upsamplings]
    cls_weight = classifier.weight.flatten(1).t().to(dtype)  # (C, K)
    cls_bias = (classifier.bias if classifier.bias is not None
                else classifier.weight.new_zeros(classifier.out_channels)).to(dtype)
    with torch.autocast(device, enabled=False):
        return torch.stack([_class_head_one(sample.to(dtype), layers, cls_weight, cls_bias)
                            for sample in x.unbind(0)])


def _bordered(x: torch.Tensor, shape, strides) -> _Bordered:
    return _Bordered(shape, x.shape[0], _low_border(strides), x, x.dtype)


def _class_head_one(x, layers, cls_weight, cls_bias):
    """x (C, X, Y, Z) → (K, X', Y', Z')."""
    shape = x.shape[1:]
    current = _bordered(x, shape, layers[0][2])
    current.interior.copy_(x.permute(1, 2, 3, 0))
    for i, (weight, bias, strides) in enumerate(layers):
        shape = tuple(n * s for n, s in zip(shape, strides))
        last = i == len(layers) - 1
        if last:
            out = x.new_empty((cls_weight.shape[1], *shape))
        else:
            following = _bordered(x, shape, layers[i + 1][2])
            out = following.interior
        for (px, py, pz), xs, rows in current.transposed_conv(weight, bias, strides):
            first, stop = px + strides[0] * xs.start, px + strides[0] * xs.stop
            phase = (slice(first, stop, strides[0]), slice(py, None, strides[1]), slice(pz, None, strides[2]))
            if last:
                scores = current.rows_to_volume(torch.addmm(cls_bias, rows, cls_weight))
                out[(slice(None), *phase)] = scores.permute(3, 0, 1, 2)
            else:
                out[phase] = current.rows_to_volume(rows)
        if not last:
            current = following
    return out


def phase_convolutions(x: torch.Tensor, upsamplings: list[Layer], classifier: nn.Conv3d) -> torch.Tensor:
    """:func:`class_head` as one ``conv3d`` per output parity of each upsampling (its taps as
    the kernel), ReLU, and for the last the 1x1 classifier before the parities are interleaved:
    operators an exported graph runs natively, without the (B, C, X', Y', Z') volume of the
    last upsampling. x (B, C, X, Y, Z) → logits (B, K, X', Y', Z')."""
    for i, (deconv, bn) in enumerate(upsamplings):
        weight, bias = fold_batchnorm(deconv, bn, x.dtype)
        last = i == len(upsamplings) - 1
        lo = _low_border(deconv.stride)
        padded = F.pad(x, (lo[2], 1, lo[1], 1, lo[0], 1))  # every shift reads inside
        parts = []
        for phases in itertools.product(*(_axis_phases(s) for s in deconv.stride)):
            taps = [[tap for _, tap in axis_taps] for _, axis_taps in phases]
            kernel = weight[taps[0]][:, taps[1]][:, :, taps[2]].permute(4, 3, 0, 1, 2)
            window = tuple(slice(low + axis_taps[0][0], low + axis_taps[0][0] + n + len(axis_taps) - 1)
                           for (_, axis_taps), low, n in zip(phases, lo, x.shape[2:]))
            part = F.conv3d(padded[(..., *window)], kernel, bias).relu()
            parts.append(F.conv3d(part, classifier.weight, classifier.bias) if last else part)
        x = _interleave(parts, deconv.stride)
    return x


def _interleave(parts: list[torch.Tensor], strides) -> torch.Tensor:
    """Per-parity outputs (B, C, X, Y, Z), in ``itertools.product`` order of the parities →
    (B, C, X*sx, Y*sy, Z*sz) with parity (px, py, pz) at ``[px::sx, py::sy, pz::sz]``."""
    b, c, nx, ny, nz = parts[0].shape
    sx, sy, sz = strides
    grouped = torch.stack(parts, 2).view(b, c, sx, sy, sz, nx, ny, nz)
    return grouped.permute(0, 1, 5, 2, 6, 3, 7, 4).reshape(b, c, nx * sx, ny * sy, nz * sz)
