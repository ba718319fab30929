"""MaskDINO's pixel decoder: a deformable-attention encoder over res3–res5 plus an extra level.

Parameter names follow mmdet/MaskDINO (``input_proj``, ``transformer.encoder.layers``,
``adapter_1``/``layer_1``, ``mask_features``) so the authors' checkpoints load unchanged.
"""
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .deform_attn import MultiScaleDeformableAttention, SpatialShapes
from .pos_embed import sine_position_encoding


class ConvNormAct(nn.Module):
    """mmcv ``ConvModule``: conv (no bias) → GroupNorm → optional ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, num_groups: int,
                 relu: bool):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2,
                              bias=False)
        self.gn = nn.GroupNorm(num_groups, out_channels)
        self.relu = relu

    def forward(self, x):
        x = self.gn(self.conv(x))
        return F.relu(x) if self.relu else x


class FFN(nn.Module):
    """mmcv ``FFN``: ``x + Linear(ReLU(Linear(x)))``."""

    def __init__(self, embed_dims: int, feedforward_channels: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.Sequential(
            nn.Sequential(nn.Linear(embed_dims, feedforward_channels), nn.ReLU(), nn.Dropout(dropout)),
            nn.Linear(feedforward_channels, embed_dims), nn.Dropout(dropout))

    def forward(self, x):
        return x + self.layers(x)


class DeformableEncoderLayer(nn.Module):
    """Post-norm Deformable-DETR encoder layer: self-attention → norm → FFN → norm."""

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, feedforward_channels: int,
                 dropout: float = 0.0, num_points: int = 4):
        super().__init__()
        self.self_attn = MultiScaleDeformableAttention(embed_dims, num_heads, num_levels, num_points,
                                                       dropout)
        self.ffn = FFN(embed_dims, feedforward_channels, dropout)
        self.norms = nn.ModuleList([nn.LayerNorm(embed_dims) for _ in range(2)])

    def forward(self, query, query_pos, reference_points, spatial_shapes):
        query = self.norms[0](self.self_attn(query, None, query_pos, reference_points, spatial_shapes))
        return self.norms[1](self.ffn(query))


class DeformableEncoder(nn.Module):

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_layers: int,
                 feedforward_channels: int, dropout: float = 0.0):
        super().__init__()
        self.layers = nn.ModuleList([
            DeformableEncoderLayer(embed_dims, num_heads, num_levels, feedforward_channels, dropout)
            for _ in range(num_layers)
        ])

    def forward(self, query, query_pos, spatial_shapes: SpatialShapes):
        """query, query_pos (B, N, C) over all levels → (B, N, C)."""
        ref = encoder_reference_points(spatial_shapes, query.device)
        ref = ref[None, :, None, :].expand(query.shape[0], -1, len(spatial_shapes), -1)
        for layer in self.layers:
            query = layer(query, query_pos, ref, spatial_shapes)
        return query


class MSDeformAttnEncoder(nn.Module):
    """Holds ``level_embed`` and the encoder, as MaskDINO's ``transformer`` module."""

    def __init__(self, embed_dims: int, num_heads: int, num_levels: int, num_layers: int,
                 feedforward_channels: int, dropout: float = 0.0):
        super().__init__()
        self.encoder = DeformableEncoder(embed_dims, num_heads, num_levels, num_layers,
                                         feedforward_channels, dropout)
        self.level_embed = nn.Parameter(torch.zeros(num_levels, embed_dims))


def encoder_reference_points(spatial_shapes: SpatialShapes, device=None) -> torch.Tensor:
    """Pixel centres of every level, normalized (x, y) → (N, 2)."""
    refs = []
    for h, w in spatial_shapes:
        ref_y, ref_x = torch.meshgrid(
            torch.linspace(0.5, h - 0.5, h, dtype=torch.float32, device=device),
            torch.linspace(0.5, w - 0.5, w, dtype=torch.float32, device=device), indexing='ij')
        refs.append(torch.stack((ref_x.reshape(-1) / w, ref_y.reshape(-1) / h), -1))
    return torch.cat(refs, 0)


class MaskDINOPixelDecoder(nn.Module):
    """Multi-scale deformable encoder over backbone levels res3..res5 (+ extra strided levels).

    Args:
        in_channels: channels of res2..res5.
        conv_dim: width of the encoder; num_layers/num_heads/feedforward_channels: its shape.
        total_num_levels: encoder levels including the extra stride-2 convs on res5.
    """

    def __init__(self, in_channels: Sequence[int] = (256, 512, 1024, 2048), conv_dim: int = 256,
                 mask_dim: int = 256, num_heads: int = 8, num_layers: int = 6,
                 feedforward_channels: int = 2048, total_num_levels: int = 4,
                 num_groups: int = 32, dropout: float = 0.0):
        super().__init__()
        if len(in_channels) != 4:
            raise ValueError(f'pixel decoder expects 4 backbone levels, got {len(in_channels)}')
        self.num_extra_levels = total_num_levels - 3
        projs = [nn.Sequential(nn.Conv2d(c, conv_dim, 1), nn.GroupNorm(num_groups, conv_dim))
                 for c in in_channels[1:]]
        extra_in = in_channels[3]
        for _ in range(self.num_extra_levels):
            projs.append(nn.Sequential(nn.Conv2d(extra_in, conv_dim, 3, stride=2, padding=1),
                                       nn.GroupNorm(num_groups, conv_dim)))
            extra_in = conv_dim
        self.input_proj = nn.ModuleList(projs)
        self.transformer = MSDeformAttnEncoder(conv_dim, num_heads, total_num_levels, num_layers,
                                               feedforward_channels, dropout)
        self.mask_features = nn.Conv2d(conv_dim, mask_dim, 1)
        self.adapter_1 = ConvNormAct(in_channels[0], conv_dim, 1, num_groups, relu=False)
        self.layer_1 = ConvNormAct(conv_dim, conv_dim, 3, num_groups, relu=True)
        # MaskDINO's mask branch is loaded with the checkpoint but feeds nothing Symphonies uses,
        # so it gets no gradient; frozen, it leaves DDP's unused-parameter search off.
        for module in (self.mask_features, self.adapter_1, self.layer_1):
            module.requires_grad_(False)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """res2..res5 (B, Ci, H/s, W/s) → encoder outputs at strides 8, 16, 32, 64 (B, conv_dim, h, w).

        Runs in float32 even under autocast, as the authors' decoder does.
        """
        with torch.autocast(features[0].device.type, enabled=False):
            srcs = [proj(f.float()) for proj, f in zip(self.input_proj[:3], features[1:])]
            extra = features[3].float()
            for proj in self.input_proj[3:]:
                extra = proj(extra)
                srcs.append(extra)
            shapes = [tuple(s.shape[-2:]) for s in srcs]
            bs = srcs[0].shape[0]
            query = torch.cat([s.flatten(2).transpose(1, 2) for s in srcs], 1)
            pos = torch.cat([
                (sine_position_encoding(bs, h, w, srcs[0].shape[1] // 2, device=query.device)
                 .flatten(2).transpose(1, 2) + self.transformer.level_embed[lvl].view(1, 1, -1))
                for lvl, (h, w) in enumerate(shapes)
            ], 1)
            memory = self.transformer.encoder(query, pos, shapes)
            outs = memory.split([h * w for h, w in shapes], dim=1)
            return [o.transpose(1, 2).reshape(bs, -1, h, w) for o, (h, w) in zip(outs, shapes)]

    def mask_branch(self, res2: torch.Tensor, stride8: torch.Tensor) -> torch.Tensor:
        """The FPN path on res2 → ``mask_features`` (B, mask_dim, H/4, W/4).

        Part of MaskDINO's parameters; Symphonies does not use its output.
        """
        y = self.adapter_1(res2.float()) + F.interpolate(
            stride8, size=res2.shape[-2:], mode='bilinear', align_corners=False)
        return self.mask_features(self.layer_1(y))
