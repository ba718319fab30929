"""Positional encodings: the 2-D sine encoding of the pixel decoder and the learned 3-D one."""
import math
from collections.abc import Sequence

import torch
from torch import nn


def sine_position_encoding(bs: int, height: int, width: int, num_feats: int = 128,
                           temperature: float = 10000.0, device=None) -> torch.Tensor:
    """DETR's normalized sine encoding of an unpadded (H, W) map → (B, 2*num_feats, H, W)."""
    scale, eps = 2 * math.pi, 1e-6
    ones = torch.ones((bs, height, width), dtype=torch.float32, device=device)
    y_embed = ones.cumsum(1)
    x_embed = ones.cumsum(2)
    y_embed = y_embed / (y_embed[:, -1:, :] + eps) * scale
    x_embed = x_embed / (x_embed[:, :, -1:] + eps) * scale
    dim_t = torch.arange(num_feats, dtype=torch.float32, device=device)
    dim_t = temperature**(2 * (dim_t // 2) / num_feats)
    pos_x = x_embed[..., None] / dim_t
    pos_y = y_embed[..., None] / dim_t
    pos_x = torch.stack((pos_x[..., 0::2].sin(), pos_x[..., 1::2].cos()), dim=4).flatten(3)
    pos_y = torch.stack((pos_y[..., 0::2].sin(), pos_y[..., 1::2].cos()), dim=4).flatten(3)
    return torch.cat((pos_y, pos_x), dim=3).permute(0, 3, 1, 2)


class LearnableSqueezePositionalEncoding(nn.Module):
    """Factorized learned 3-D encoding: one table per axis, concatenated, then projected.

    With ``num_embeds = (X, Y, Zc)`` and ``squeeze_dims = (sx, sy, sz)`` it encodes a volume of
    ``X * Y * Zc*sx*sy*sz`` voxels; voxel (x, y, z) of the (X, Y, Zc*sx*sy*sz) grid, flattened
    C-order, reads ``E0[x*sx + a]``, ``E1[y*sy + b]``, ``E2[c*sz + d]`` where
    ``z = ((c*sx + a)*sy + b)*sz + d``.
    """

    def __init__(self, num_embeds: Sequence[int], embed_dims: int, squeeze_dims: Sequence[int]):
        super().__init__()
        self.num_embeds = tuple(num_embeds)
        self.squeeze_dims = tuple(squeeze_dims)
        self.embeds = nn.ModuleList([
            nn.Embedding(n * s, embed_dims // 2) for n, s in zip(num_embeds, squeeze_dims)
        ])
        self.proj = nn.Linear(embed_dims // 2 * len(num_embeds), embed_dims)

    def forward(self) -> torch.Tensor:
        """→ (N, C) for the N voxels of the volume, C-order over (x, y, z)."""
        sizes = [n * s for n, s in zip(self.num_embeds, self.squeeze_dims)]
        parts = []
        for axis, embed in enumerate(self.embeds):
            view = [1] * len(sizes)
            view[axis] = sizes[axis]
            parts.append(embed.weight.view(*view, -1).expand(*sizes, -1))
        table = torch.cat(parts, dim=-1)
        split = [d for pair in zip(self.num_embeds, self.squeeze_dims) for d in pair]
        ndim = len(sizes)
        order = [2 * i for i in range(ndim)] + [2 * i + 1 for i in range(ndim)] + [2 * ndim]
        table = table.reshape(*split, -1).permute(*order).flatten(0, -2)
        return self.proj(table)
