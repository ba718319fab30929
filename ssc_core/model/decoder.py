"""The Symphonies decoder: voxel proposal, Symphonies layers, ASPP and the class head.

The scene lives as a (B, N, C) sequence over the N = X*Y*Z voxels of the decoder grid,
flattened C-order over (x, y, z). Per-sample voxel subsets (field of view, depth proposals)
are gathered into padded (B, M, C) blocks, so a batch gives each sample its single-sample result.
"""
from collections.abc import Sequence
from contextlib import contextmanager
from typing import NamedTuple

import torch
from torch import nn

from .deform_attn import DeformableSqueezeAttention
from .pos_embed import LearnableSqueezePositionalEncoding
from .subpixel_head import class_head, phase_convolutions, supports
from .transformer import DeformableTransformerLayer, TransformerLayer


def masked_indices(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """mask (B, N) bool → indices (B, M) of the True entries in increasing order (padded with
    other indices) and valid (B, M) bool, with M the largest count in the batch; valid is None
    when nothing is padded (B == 1)."""
    if mask.shape[0] == 1:  # no padding; a shape exporters can follow
        index = mask[0].nonzero()[:, 0].unsqueeze(0)
        if torch.compiler.is_exporting():  # a size hint tracing needs; the graph runs empty too
            torch._check(index.shape[1] > 0)
        return index, None
    counts = mask.sum(1)
    num = int(counts.max()) if mask.shape[0] else 0
    order = torch.argsort((~mask).to(torch.uint8), dim=1, stable=True)[:, :num]
    valid = torch.arange(num, device=mask.device)[None] < counts[:, None]
    return order, valid


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), index (B, M) → (B, M, C)."""
    if x.shape[0] == 1:  # whole rows at once
        return x[0].index_select(0, index[0]).unsqueeze(0)
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def scatter_rows(x: torch.Tensor, index: torch.Tensor, valid: torch.Tensor | None,
                 rows: torch.Tensor) -> torch.Tensor:
    """Write rows (B, M, C) into x (B, N, C) at index (B, M) where valid (None: everywhere);
    returns a new tensor."""
    if valid is None and x.shape[0] == 1:
        return x[0].index_copy(0, index[0], rows[0]).unsqueeze(0)
    if valid is not None:
        rows = torch.where(valid[..., None], rows, gather_rows(x, index))
    return x.scatter(1, index[..., None].expand(-1, -1, x.shape[-1]), rows)


class ASPP(nn.Module):
    """``relu(x + sum_d block_d(x))`` with two dilated 3x3x3 convs per block."""

    def __init__(self, channels: int, dilations: Sequence[int] = (1, 3)):
        super().__init__()
        self.blks = nn.ModuleList([  # 'blks': the authors' checkpoint key
            nn.Sequential(
                nn.Conv3d(channels, channels, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm3d(channels), nn.ReLU(inplace=True),
                nn.Conv3d(channels, channels, 3, padding=d, dilation=d, bias=False),
                nn.BatchNorm3d(channels)) for d in dilations
        ])

    def forward(self, x):
        """x (B, C, X, Y, Z) → same shape."""
        out = x
        for blk in self.blks:
            out = out + blk(x)
        return torch.relu(out)


class Upsample(nn.Module):
    """Transposed 3x3x3 conv, stride 2 → BN → ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.up_bn = nn.Sequential(
            nn.ConvTranspose3d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1),
            nn.BatchNorm3d(out_channels), nn.ReLU())

    def forward(self, x):
        return self.up_bn(x)


@contextmanager
def head_form(head: 'ClassHead', subpixel: bool):
    """Run ``head`` as sub-pixel GEMMs (True) or as the authors' layers (False) inside the block,
    then restore its previous form."""
    previous, head.subpixel = head.subpixel, subpixel
    try:
        yield
    finally:
        head.subpixel = previous


class ClassHead(nn.Sequential):
    """``Sequential(z_up, Upsample or Identity, Conv3d 1x1)``, the authors' cls_head.

    ``subpixel = True`` computes the upsamplings and the 1x1 conv in eval mode as sub-pixel
    GEMMs (:func:`~ssc_core.model.subpixel_head.class_head`): the same function with a
    fraction of the memory traffic. Backends choose that form per call with :func:`head_form`.
    Graphs being exported (``torch.export``, ONNX) take it as per-parity convolutions
    (:func:`~ssc_core.model.subpixel_head.phase_convolutions`); training runs the layers as
    written.
    """

    def __init__(self, *layers: nn.Module, subpixel: bool = False):
        super().__init__(*layers)
        self.subpixel = subpixel

    def forward(self, x):
        """x (B, C, X, Y, Z) → logits (B, K, X', Y', Z')."""
        exporting = torch.compiler.is_exporting()
        if not self.training and (self.subpixel or exporting):
            upsamplings = self._upsamplings()
            if upsamplings:
                return (phase_convolutions if exporting else class_head)(x, upsamplings, self[2])
        return super().forward(x)

    def _upsamplings(self):
        """[(deconv, bn)] of the layers before the classifier, or None when one has another form."""
        layers = []
        for layer in self[:2]:
            if isinstance(layer, Upsample):
                layer = layer.up_bn
            if isinstance(layer, nn.Identity):
                continue
            deconv, bn = layer[0], layer[1]
            if not (isinstance(deconv, nn.ConvTranspose3d) and supports(deconv)
                    and isinstance(bn, nn.BatchNorm3d) and isinstance(layer[2], nn.ReLU)):
                return None
            layers.append((deconv, bn))
        return layers or None


class VoxelProposalLayer(nn.Module):
    """Updates the voxels hit by a depth point with deformable attention into the image."""

    def __init__(self, embed_dims: int, num_heads: int = 8, num_levels: int = 3, num_points: int = 4):
        super().__init__()
        self.attn = DeformableTransformerLayer(embed_dims, num_heads, num_levels, num_points)

    def forward(self, scene_embed, feats_flat, feat_shapes, scene_pos, proposal_mask, ref_pix):
        """scene_embed, scene_pos (B, N, C); feats_flat (B, Nf, C); proposal_mask (B, N) bool;
        ref_pix (B, N, 2) normalized (x, y) → (B, N, C)."""
        index, valid = masked_indices(proposal_mask)
        ref = gather_rows(ref_pix, index).unsqueeze(2).expand(-1, -1, len(feat_shapes), -1)
        rows = self.attn(gather_rows(scene_embed, index), feats_flat, gather_rows(scene_pos, index),
                         ref, feat_shapes)
        return scatter_rows(scene_embed, index, valid, rows)


class VisibleVoxels(NamedTuple):
    """The decoder-grid voxels in the camera's field of view, per sample, padded to M."""
    index: torch.Tensor          # (B, M) voxel indices (:func:`masked_indices` of the FOV mask)
    valid: torch.Tensor | None   # (B, M) bool, None when every entry is valid
    pos: torch.Tensor            # (B, M, C) their positional encoding
    ref: torch.Tensor            # (B, M, 1, 3) their (z, y, x) reference points


class SymphoniesLayer(nn.Module):
    """Instance↔image, scene←instance, scene self (squeeze) and instance←scene attention."""

    def __init__(self, embed_dims: int, num_heads: int = 8, num_levels: int = 3, num_points: int = 4,
                 query_update: bool = True):
        super().__init__()
        # sic: 'defrom' is the authors' spelling, kept because it is their checkpoint key
        self.query_image_cross_defrom_attn = DeformableTransformerLayer(
            embed_dims, num_heads, num_levels, num_points)
        self.scene_query_cross_attn = TransformerLayer(embed_dims, num_heads, mlp_ratio=0)
        self.scene_self_deform_attn = DeformableTransformerLayer(
            embed_dims, num_heads, num_levels=1, num_points=num_points * 2,
            attn_layer=DeformableSqueezeAttention)
        self.query_update = query_update
        if query_update:
            self.query_scene_cross_deform_attn = DeformableTransformerLayer(
                embed_dims, num_heads, num_levels=1, num_points=num_points * 2,
                attn_layer=DeformableSqueezeAttention, mlp_ratio=0)
            self.query_self_attn = TransformerLayer(embed_dims, num_heads)

    def forward(self, scene_embed, inst_queries, feats_flat, feat_shapes, scene_shape, ref_2d, ref_3d,
                visible: VisibleVoxels):
        """
        Args:
            scene_embed: (B, N, C); inst_queries: (B, Q, C).
            feats_flat: (B, Nf, C) image levels of ``feat_shapes``; scene_shape: (X, Y, Z).
            ref_2d: (B, Q, L, 2) (x, y); ref_3d: (B, Q, 1, 3) (z, y, x).
            visible: the voxels in the field of view, the only ones the scene attention updates.
        Returns:
            scene_embed (B, N, C), inst_queries (B, Q, C)
        """
        scene_fov = gather_rows(scene_embed, visible.index)
        inst_queries = self.query_image_cross_defrom_attn(inst_queries, feats_flat, None, ref_2d,
                                                          feat_shapes)
        scene_fov = self.scene_query_cross_attn(scene_fov, inst_queries, inst_queries, visible.pos)
        scene_fov = self.scene_self_deform_attn(scene_fov, scene_embed, visible.pos, visible.ref,
                                                [scene_shape])
        scene_embed = scatter_rows(scene_embed, visible.index, visible.valid, scene_fov)
        if not self.query_update:
            return scene_embed, inst_queries
        inst_queries = self.query_scene_cross_deform_attn(inst_queries, scene_embed, None, ref_3d,
                                                          [scene_shape])
        inst_queries = self.query_self_attn(inst_queries)
        return scene_embed, inst_queries


class SymphoniesDecoder(nn.Module):
    """Instance queries + image features + depth → per-voxel class logits.

    Args:
        embed_dims, num_classes, num_layers, num_levels: widths and depth.
        scene_shape: output grid (X, Y, Z), e.g. (256, 256, 32).
        project_scale: decoder grid is ``scene_shape / project_scale`` (1 or 2).
        image_shape: (H, W) of the input image.
        voxel_size: output voxel size in metres.
        downsample_z: extra Z reduction of the decoder grid.
        pos_squeeze_dims: factorization of the learned positional encoding.
        aspp_after_layer: index of the layer after which ASPP runs (the authors: 2).
    """

    def __init__(self, embed_dims: int, num_classes: int, num_layers: int, num_levels: int,
                 scene_shape: Sequence[int], project_scale: int, image_shape: Sequence[int],
                 voxel_size: float = 0.2, downsample_z: int = 1,
                 pos_squeeze_dims: Sequence[int] = (2, 2, 1), aspp_after_layer: int = 2):
        super().__init__()
        if project_scale not in (1, 2):
            raise ValueError(f'project_scale must be 1 or 2, got {project_scale}')
        self.projection_shape = tuple(s // project_scale for s in scene_shape)
        x, y, z = self.projection_shape
        self.scene_shape = (x, y, z // downsample_z)
        self.image_shape = tuple(image_shape)
        self.voxel_size = voxel_size * project_scale
        self.downsample_z = downsample_z
        self.aspp_after_layer = aspp_after_layer
        num_voxels = x * y * (z // downsample_z)

        self.voxel_proposal = VoxelProposalLayer(embed_dims, num_levels=num_levels)
        self.layers = nn.ModuleList([
            SymphoniesLayer(embed_dims, num_levels=num_levels, query_update=i != num_layers - 1)
            for i in range(num_layers)
        ])
        self.scene_embed = nn.Embedding(num_voxels, embed_dims)
        squeeze = 1
        for s in pos_squeeze_dims:
            squeeze *= s
        self.scene_pos = LearnableSqueezePositionalEncoding(
            (x, y, self.scene_shape[2] // squeeze), embed_dims, pos_squeeze_dims)
        self.register_buffer('image_grid', pixel_grid(self.image_shape), persistent=False)
        self.register_buffer('voxel_grid', normalized_voxel_grid(self.scene_shape), persistent=False)
        self.aspp = ASPP(embed_dims, (1, 3))
        z_up = (nn.Sequential(
            nn.ConvTranspose3d(embed_dims, embed_dims, 3, stride=(1, 1, downsample_z), padding=1,
                               output_padding=(0, 0, downsample_z - 1)),
            nn.BatchNorm3d(embed_dims), nn.ReLU()) if downsample_z != 1 else nn.Identity())
        self.cls_head = ClassHead(
            z_up,
            Upsample(embed_dims, embed_dims) if project_scale == 2 else nn.Identity(),
            nn.Conv3d(embed_dims, num_classes, kernel_size=1))

    def forward(self, feats, inst_queries, pred_pts, depth, cam_K, cam_pose, voxel_origin,
                projected_pix, fov_mask) -> list[torch.Tensor]:
        """
        Args:
            feats: image levels [(B, C, h_l, w_l)]; inst_queries (B, Q, C); pred_pts (B, Q, 2).
            depth: (B, H, W) metres; non-finite or ≤ 0 means no depth.
            cam_K (B, 3, 3); cam_pose (B, 4, 4) grid→camera; voxel_origin (B, 3) metres.
            projected_pix (B, Np, 2) int pixel (u, v) and fov_mask (B, Np) bool of the
            ``projection_shape`` grid voxels (C-order), as :func:`ssc_core.geometry.vox2pix`.
        Returns:
            logits (B, num_classes, *scene_shape * project_scale): one per layer in training,
            only the last in eval.
        """
        with torch.autocast(depth.device.type, enabled=False):
            feats = [f.float() for f in feats]
            return self._forward(feats, inst_queries.float(), pred_pts.float(), depth.float(),
                                 cam_K.float(), cam_pose.float(), voxel_origin.float(),
                                 projected_pix, fov_mask)

    def _forward(self, feats, inst_queries, pred_pts, depth, cam_K, cam_pose, voxel_origin,
                 projected_pix, fov_mask):
        bs = depth.shape[0]
        feat_shapes = [tuple(f.shape[-2:]) for f in feats]
        feats_flat = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
        if self.downsample_z != 1:
            projected_pix, fov_mask = self._downsample_projection(projected_pix, fov_mask)

        vol_pts, has_depth = self.depth_to_voxels(depth, cam_K, cam_pose, voxel_origin)
        proposal_mask = self.proposal_mask(vol_pts, has_depth)
        ref_2d = pred_pts.unsqueeze(2).expand(-1, -1, len(feats), -1)
        ref_3d = self.instance_reference_points(pred_pts, vol_pts).unsqueeze(2).flip(-1)
        height, width = self.image_shape
        scale = torch.tensor([width, height], dtype=torch.float32, device=depth.device)
        ref_pix = (projected_pix + 0.5) / scale

        scene_pos = self.scene_pos().unsqueeze(0).expand(bs, -1, -1)
        scene_embed = self.scene_embed.weight.unsqueeze(0).expand(bs, -1, -1)
        scene_embed = self.voxel_proposal(scene_embed, feats_flat, feat_shapes, scene_pos,
                                          proposal_mask, ref_pix)

        fov_index, fov_valid = masked_indices(fov_mask)
        voxel_ref = self.voxel_grid.flatten(1).t().flip(-1)  # (N, 3) as (z, y, x)
        visible = VisibleVoxels(fov_index, fov_valid, gather_rows(scene_pos, fov_index),
                                voxel_ref[fov_index].unsqueeze(2))

        outs = []
        for i, layer in enumerate(self.layers):
            scene_embed, inst_queries = layer(scene_embed, inst_queries, feats_flat, feat_shapes,
                                              self.scene_shape, ref_2d, ref_3d, visible)
            last = i == len(self.layers) - 1
            if i == self.aspp_after_layer or self.training or last:
                volume = scene_embed.transpose(1, 2).reshape(bs, -1, *self.scene_shape)
            if i == self.aspp_after_layer:
                volume = self.aspp(volume)
                scene_embed = volume.flatten(2).transpose(1, 2)
            if self.training or last:
                outs.append(self.cls_head(volume))
        return outs

    def _downsample_projection(self, projected_pix, fov_mask):
        """Average Z pairs of the projection grid, as the authors' trilinear resize does."""
        bs = projected_pix.shape[0]
        x, y, z = self.projection_shape
        f = self.downsample_z
        pix = projected_pix.float().reshape(bs, x, y, z // f, f, 2).mean(4)
        mask = fov_mask.reshape(bs, x, y, z // f, f).any(4)
        return pix.to(projected_pix.dtype).reshape(bs, -1, 2), mask.reshape(bs, -1)

    def depth_to_voxels(self, depth, cam_K, cam_pose, voxel_origin):
        """Lift every pixel to decoder-grid voxel coordinates.

        Returns vol_pts (B, H*W, 3) int64 (x, y, z), truncated toward zero as the authors do,
        and has_depth (B, H*W) bool. Pixels without depth lift from depth 0.
        """
        bs = depth.shape[0]
        has_depth = torch.isfinite(depth) & (depth > 0)
        depth = torch.where(has_depth, depth, torch.zeros_like(depth)).unsqueeze(1)
        pix = torch.cat([self.image_grid * depth, depth], dim=1).flatten(2)  # (B, 3, HW)
        cam = invert(cam_K) @ pix
        cam = torch.cat([cam, torch.ones_like(cam[:, :1])], dim=1)
        world = (invert(cam_pose) @ cam)[:, :3].transpose(1, 2)
        vox = (world - voxel_origin.unsqueeze(1)) / self.voxel_size - 0.5
        if self.downsample_z != 1:
            vox = torch.cat([vox[..., :2], vox[..., 2:] / self.downsample_z], dim=-1)
        return vox.long(), has_depth.reshape(bs, -1)

    def proposal_mask(self, vol_pts, has_depth):
        """(B, N) bool: decoder voxels that contain at least one depth point."""
        bs = vol_pts.shape[0]
        x, y, z = self.scene_shape
        bounds = torch.tensor(self.scene_shape, device=vol_pts.device)
        keep = ((vol_pts >= 0) & (vol_pts < bounds)).all(-1) & has_depth
        flat = (vol_pts[..., 0] * y + vol_pts[..., 1]) * z + vol_pts[..., 2]
        flat = torch.where(keep, flat, torch.zeros_like(flat))
        flat = flat + torch.arange(bs, device=flat.device)[:, None] * (x * y * z)
        mask = torch.zeros(bs * x * y * z, dtype=torch.float32, device=flat.device)
        mask = mask.index_add(0, flat.flatten(), keep.flatten().float())
        return mask.reshape(bs, -1) > 0

    def instance_reference_points(self, pred_pts, vol_pts):
        """3-D reference of each instance: the lifted pixel under its 2-D point, normalized to
        [0, 1] by (X-1, Y-1, Z-1) → (B, Q, 3) as (x, y, z)."""
        height, width = self.image_shape
        u = (pred_pts[..., 0] * width).long().clamp(0, width - 1)
        v = (pred_pts[..., 1] * height).long().clamp(0, height - 1)
        pts = vol_pts.gather(1, (v * width + u)[..., None].expand(-1, -1, 3))
        denom = torch.tensor(self.scene_shape, device=pts.device) - 1
        return (pts / denom).clamp(0, 1)


def _cross(a, b):
    return torch.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                        a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                        a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], -1)


def invert(m: torch.Tensor) -> torch.Tensor:
    """Inverse of (B, 3, 3) matrices or (B, 4, 4) affine transforms (last row 0 0 0 1).

    LAPACK in eager mode, as the authors; a closed form while exporting (ONNX has no inverse).
    """
    if not torch.compiler.is_exporting():
        return torch.linalg.inv(m)
    a = m[..., :3, :3]
    r0, r1, r2 = a[..., 0, :], a[..., 1, :], a[..., 2, :]
    cols = torch.stack([_cross(r1, r2), _cross(r2, r0), _cross(r0, r1)], -1)
    inv3 = cols / (r0 * _cross(r1, r2)).sum(-1)[..., None, None]
    if m.shape[-1] == 3:
        return inv3
    t = -(inv3 @ m[..., :3, 3:])
    top = torch.cat([inv3, t], -1)
    return torch.cat([top, m[..., 3:, :]], -2)


def pixel_grid(image_shape: Sequence[int]) -> torch.Tensor:
    """(1, 2, H, W): channel 0 the column u, channel 1 the row v."""
    height, width = image_shape
    v, u = torch.meshgrid(torch.arange(height, dtype=torch.float32),
                          torch.arange(width, dtype=torch.float32), indexing='ij')
    return torch.stack([u, v]).unsqueeze(0)


def normalized_voxel_grid(shape: Sequence[int]) -> torch.Tensor:
    """(3, X, Y, Z): coordinate i / (s - 1) of each voxel along each axis."""
    axes = [torch.linspace(0, s - 1, s, dtype=torch.float32) / (s - 1) for s in shape]
    return torch.stack(torch.meshgrid(*axes, indexing='ij'))
