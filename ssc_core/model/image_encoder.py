"""Image encoder: timm ResNet + MaskDINO pixel decoder, projected to the decoder width.

Module names reproduce the authors' ``MMDetWrapper`` (``model.backbone``,
``model.panoptic_head.pixel_decoder``, ``query_embed``, ``pts_embed``, ``out_projs``).
"""
from dataclasses import dataclass

import timm
import torch
from torch import nn

from .pixel_decoder import MaskDINOPixelDecoder

# timm ResNets with four feature stages, built locally (no hub or path names reach timm).
BACKBONES = ('resnet10t', 'resnet18', 'resnet34', 'resnet50', 'resnet101')


@dataclass(frozen=True)
class PixelDecoderConfig:
    conv_dim: int = 256
    num_heads: int = 8
    num_layers: int = 6
    feedforward_channels: int = 2048
    total_num_levels: int = 4
    num_groups: int = 32


class _PanopticHead(nn.Module):

    def __init__(self, pixel_decoder: nn.Module):
        super().__init__()
        self.pixel_decoder = pixel_decoder


class _MaskDINOTrunk(nn.Module):
    """The parts of MaskDINO that Symphonies runs: backbone and pixel decoder."""

    def __init__(self, backbone: nn.Module, pixel_decoder: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.panoptic_head = _PanopticHead(pixel_decoder)


class ImageEncoder(nn.Module):
    """Image → features at strides 4, 8, 16 plus the learned instance queries.

    Args:
        embed_dims: width of the outputs.
        backbone: a timm model name with four feature stages (``resnet50`` for the paper).
        pixel_decoder: widths of the MaskDINO pixel decoder.
        num_queries: number of instance queries.
    """

    def __init__(self, embed_dims: int = 128, backbone: str = 'resnet50',
                 pixel_decoder: PixelDecoderConfig | None = None, num_queries: int = 100):
        super().__init__()
        if backbone not in BACKBONES:
            raise ValueError(f'backbone: expected one of {", ".join(BACKBONES)}, got {backbone!r}')
        pixel_decoder = pixel_decoder or PixelDecoderConfig()
        net = timm.create_model(backbone, pretrained=False, features_only=True, out_indices=(1, 2, 3, 4))
        channels = net.feature_info.channels()
        self.model = _MaskDINOTrunk(
            net, MaskDINOPixelDecoder(channels, pixel_decoder.conv_dim, pixel_decoder.conv_dim,
                                      pixel_decoder.num_heads, pixel_decoder.num_layers,
                                      pixel_decoder.feedforward_channels,
                                      pixel_decoder.total_num_levels, pixel_decoder.num_groups))
        self.query_embed = nn.Embedding(num_queries, embed_dims)
        self.pts_embed = nn.Embedding(num_queries, 2)
        level_channels = (channels[0], pixel_decoder.conv_dim, pixel_decoder.conv_dim)
        if embed_dims != pixel_decoder.conv_dim:
            self.out_projs = nn.ModuleList([
                nn.Sequential(nn.Conv2d(c, embed_dims, 1), nn.BatchNorm2d(embed_dims),
                              nn.ReLU(inplace=True), nn.Conv2d(embed_dims, embed_dims, 1))
                for c in level_channels
            ])
        else:
            self.out_projs = None

    def forward(self, img: torch.Tensor):
        """img (B, 3, H, W) normalized →
        feats: [(B, C, H/4, W/4), (B, C, H/8, W/8), (B, C, H/16, W/16)],
        queries (B, Q, C), pred_pts (B, Q, 2) normalized (x, y) in (0, 1)."""
        res = self.model.backbone(img)
        multi_scale = self.model.panoptic_head.pixel_decoder(res)
        feats = [res[0], multi_scale[0], multi_scale[1]]
        if self.out_projs is not None:
            feats = [proj(f) for proj, f in zip(self.out_projs, feats)]
        bs = img.shape[0]
        queries = self.query_embed.weight.unsqueeze(0).expand(bs, -1, -1)
        pred_pts = self.pts_embed.weight.sigmoid().unsqueeze(0).expand(bs, -1, -1)
        return feats, queries, pred_pts
