"""Multi-scale deformable attention in pure PyTorch (``grid_sample``), no compiled extension.

Numerically the same as mmcv's ``MultiScaleDeformableAttention`` on its PyTorch path, with the
same parameter names, so the authors' checkpoints load unchanged.
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .chunks import in_slices

SpatialShapes = Sequence[tuple[int, int]]
_constants: dict[tuple, torch.Tensor] = {}


def shape_constant(values: tuple, like: torch.Tensor) -> torch.Tensor:
    """``torch.tensor(values)`` in like's dtype on like's device, made once per device and kept:
    a forward captured as a CUDA graph may not copy host data to the device. Traced graphs
    (``torch.compile``, export) hold it as a constant."""
    if torch.compiler.is_compiling():
        return torch.tensor(values, dtype=like.dtype, device=like.device)
    key = (values, like.dtype, like.device)
    if key not in _constants:
        _constants[key] = torch.tensor(values, dtype=like.dtype, device=like.device)
    return _constants[key]


def level_maps(value: torch.Tensor, spatial_shapes: SpatialShapes) -> list[torch.Tensor]:
    """value (B, Nv, heads, D), levels flattened row-major one after another → per level the
    (B*heads, D, h, w) maps that :func:`deformable_sampling` reads."""
    bs, _, num_heads, head_dims = value.shape
    return [v.flatten(2).transpose(1, 2).reshape(bs * num_heads, head_dims, h, w)
            for v, (h, w) in zip(value.split([h * w for h, w in spatial_shapes], dim=1),
                                 spatial_shapes, strict=True)]


def deformable_sampling(levels: list[torch.Tensor], sampling_locations: torch.Tensor,
                        attention_weights: torch.Tensor) -> torch.Tensor:
    """Bilinear sampling of every level at the given locations, weighted and summed.

    Queries are sampled in slices (:mod:`.chunks`): the sampled values, (B*heads, D, queries, P)
    before they are weighted and summed, would be 0.3–0.5 GB, twice, for the ~89,000 visible
    voxels of a SemanticKITTI frame. Every query's result is computed as without slices.

    Args:
        levels: from :func:`level_maps`.
        sampling_locations: (B, Nq, heads, L, P, 2), normalized (x, y) in [0, 1].
        attention_weights: (B, Nq, heads, L, P).
    Returns:
        (B, Nq, heads * D)
    """
    bs, _, num_heads, _, num_points, _ = sampling_locations.shape
    per_query = bs * levels[0].shape[1] * num_heads * num_points * levels[0].element_size()
    return in_slices(lambda locations, weights: _sample_and_sum(levels, locations, weights),
                     sampling_locations, attention_weights, bytes_per_token=per_query)


def _sample_and_sum(values: list[torch.Tensor], sampling_locations: torch.Tensor,
                    attention_weights: torch.Tensor) -> torch.Tensor:
    """values: per level (B*heads, D, h, w); locations (B, n, heads, L, P, 2); weights
    (B, n, heads, L, P) → (B, n, heads * D)."""
    bs, num_queries, num_heads, num_levels, num_points, _ = sampling_locations.shape
    grids = 2 * sampling_locations - 1
    weights = attention_weights.transpose(1, 2).reshape(bs * num_heads, 1, num_queries,
                                                        num_levels, num_points)
    out = None
    for level, value_l in enumerate(values):
        grid_l = grids[:, :, :, level].transpose(1, 2).flatten(0, 1)  # (B*heads, n, P, 2)
        sampled = F.grid_sample(value_l, grid_l, mode='bilinear', padding_mode='zeros',
                                align_corners=False)  # (B*heads, D, n, P)
        part = (sampled * weights[..., level, :]).sum(-1)  # (B*heads, D, n)
        out = part if out is None else out + part
    return out.view(bs, num_heads * values[0].shape[1], num_queries).transpose(1, 2).contiguous()


class MultiScaleDeformableAttention(nn.Module):
    """Deformable attention over several 2-D feature levels (Deformable DETR).

    Returns ``output_proj(attention) + identity`` where identity is the query as given
    (before ``query_pos`` is added), exactly like mmcv.
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 4,
                 num_points: int = 4, dropout: float = 0.1):
        super().__init__()
        if embed_dims % num_heads:
            raise ValueError(f'embed_dims ({embed_dims}) must be divisible by num_heads ({num_heads})')
        self.embed_dims = embed_dims
        self.num_heads = num_heads
        self.num_levels = num_levels
        self.num_points = num_points
        self.sampling_offsets = nn.Linear(embed_dims, num_heads * num_levels * num_points * 2)
        self.attention_weights = nn.Linear(embed_dims, num_heads * num_levels * num_points)
        self.value_proj = nn.Linear(embed_dims, embed_dims)
        self.output_proj = nn.Linear(embed_dims, embed_dims)
        self.dropout = nn.Dropout(dropout)

    def forward(self, query: torch.Tensor, value: torch.Tensor | None, query_pos: torch.Tensor | None,
                reference_points: torch.Tensor, spatial_shapes: SpatialShapes,
                key_padding_mask: torch.Tensor | None = None) -> torch.Tensor:
        """
        Args:
            query: (B, Nq, C); value: (B, Nv, C) or None for self-attention on ``query``.
            query_pos: (B, Nq, C) or None.
            reference_points: (B, Nq, L, 2), normalized (x, y).
            spatial_shapes: (h, w) per level; key_padding_mask: (B, Nv) bool, True = padding.
        Returns:
            (B, Nq, C)
        """
        if value is None:
            value = query
        bs = query.shape[0]
        value = self.value_proj(value)
        if key_padding_mask is not None:
            value = value.masked_fill(key_padding_mask[..., None], 0.0)
        value = value.view(bs, value.shape[1], self.num_heads, self.embed_dims // self.num_heads)
        levels = level_maps(value, spatial_shapes)
        del value
        # each query's offsets, weights and sampling: over slices of the queries at inference
        per_query = 2 * self.num_heads * self.num_levels * self.num_points * 2 * query.element_size()
        return in_slices(lambda q, pos, refs: self._attend(q, pos, refs, levels, spatial_shapes),
                         query, query_pos, reference_points, bytes_per_token=per_query)

    def _attend(self, query, query_pos, reference_points, levels, spatial_shapes):
        """The attention of (B, n, C) queries on the value's :func:`level_maps`, plus identity."""
        identity = query
        if query_pos is not None:
            query = query + query_pos
        bs, num_queries, _ = query.shape
        shape = (bs, num_queries, self.num_heads, self.num_levels, self.num_points)
        offsets = self.sampling_offsets(query).view(*shape, 2)
        weights = self.attention_weights(query).view(
            bs, num_queries, self.num_heads, self.num_levels * self.num_points)
        weights = weights.softmax(-1).view(shape)
        normalizer = shape_constant(tuple((w, h) for h, w in spatial_shapes), offsets)
        locations = (reference_points[:, :, None, :, None, :] +
                     offsets / normalizer[None, None, None, :, None, :])
        out = deformable_sampling(levels, locations, weights)
        return self.dropout(self.output_proj(out)) + identity


class DeformableSqueezeAttention(nn.Module):
    """Deformable attention over a 3-D volume, with Z folded into X to make a 2-D map.

    The (X, Y, Z) volume is read as a (X*Z, Y) image: voxel (x, y, z) sits at row x*Z + z,
    column y. A reference point (z, y, x) (normalized) becomes (w, h) = (y, x + (z - 0.5) / Z).
    Parameter layout as the authors' (``attns.0.*``).
    """

    def __init__(self, embed_dims: int = 256, num_heads: int = 8, num_levels: int = 1,
                 num_points: int = 4, dropout: float = 0.1):
        super().__init__()
        self.attns = nn.ModuleList(
            [MultiScaleDeformableAttention(embed_dims, num_heads, num_levels, num_points, dropout)])

    def forward(self, query: torch.Tensor, value: torch.Tensor, query_pos: torch.Tensor | None,
                reference_points: torch.Tensor,
                spatial_shapes: Sequence[tuple[int, int, int]]) -> torch.Tensor:
        """
        Args:
            query: (B, Nq, C); value: (B, X*Y*Z, C) flattened C-order over (x, y, z).
            reference_points: (B, Nq, 1, 3) normalized (z, y, x).
            spatial_shapes: one (X, Y, Z).
        Returns:
            (B, Nq, C)
        """
        value, reference_points, shapes_2d = squeeze_volume(value, reference_points, spatial_shapes)
        return self.attns[0](query, value, query_pos, reference_points, shapes_2d)


def squeeze_volume(value: torch.Tensor, reference_points: torch.Tensor,
                   spatial_shapes: Sequence[tuple[int, int, int]]):
    """Fold Z into X: (B, X*Y*Z, C) → (B, X*Z*Y, C), refs (z, y, x) → (y, x + (z-0.5)/Z)."""
    bs, _, channels = value.shape
    folded, shapes_2d = [], []
    for value_l, (x, y, z) in zip(value.split([a * b * c for a, b, c in spatial_shapes], dim=1),
                                  spatial_shapes):
        folded.append(value_l.reshape(bs, x, y, z, channels).transpose(2, 3).flatten(1, 3))
        shapes_2d.append((x * z, y))
    depth = shape_constant(tuple(s[2] for s in spatial_shapes), reference_points)
    ref_x = reference_points[..., 2] + (reference_points[..., 0] - 0.5) / depth
    ref = torch.stack([reference_points[..., 1], ref_x], dim=-1)
    return torch.cat(folded, dim=1), ref, shapes_2d
