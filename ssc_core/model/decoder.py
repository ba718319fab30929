"""The Symphonies decoder: voxel proposal, Symphonies layers, ASPP and the class head.

The scene lives as a (B, N, C) sequence over the N = X*Y*Z voxels of the decoder grid,
flattened C-order over (x, y, z). The two voxel subsets the attention updates — the field of
view (a function of the calibration) and the depth proposals (of the frame) — are taken as
fixed-size selections (:func:`select_voxels`): an index of S rows per sample, the subset first,
padded with other rows that are computed and left unchanged. S is either each batch's largest
count, read from the data (eager), or given (:class:`SelectionSizes`): then no shape depends
on the data, so ``torch.compile(fullgraph=True)``, CUDA graphs and exported graphs take the
whole forward. Either way a batch gives each sample its single-sample result.
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


class SelectionSizes(NamedTuple):
    """Rows of the decoder's two voxel selections: at least each sample's count (see
    :meth:`SymphoniesDecoder.selection_counts`); rows beyond a size would be left out."""
    visible: int    # voxels in the field of view
    proposals: int  # voxels holding a depth point


class VoxelSelection(NamedTuple):
    """S rows per sample: the selected voxels in increasing order, then other voxels."""
    index: torch.Tensor          # (B, S) distinct voxel indices
    valid: torch.Tensor | None   # (B, S) bool, True for the selected; None when all are


def stable_partition(mask: torch.Tensor) -> torch.Tensor:
    """mask (B, N) bool → (B, N) int64 permutation: each row's True indices in increasing
    order, then its False ones (a stable argsort of ``~mask``), by cumulative sums and one
    scatter: no sort, no data-dependent shape."""
    taken = mask.long().cumsum(1)
    position = torch.arange(mask.shape[1], device=mask.device).expand_as(taken)
    target = torch.where(mask, taken - 1, taken[:, -1:] + position - taken)
    return torch.zeros_like(target).scatter(1, target, position)


def select_voxels(mask: torch.Tensor, size: int | None = None) -> VoxelSelection:
    """The True entries of mask (B, N) as S = ``size`` rows per sample; None: the largest count
    of the batch, read from the data (a host sync, eager only); at most N. A sample with more
    than S entries keeps its first S."""
    order = stable_partition(mask)
    counts = mask.sum(1)
    if size is None:
        size = int(counts.max()) if mask.shape[0] else 0
        if mask.shape[0] == 1:
            return VoxelSelection(order[:, :size], None)
    size = min(size, mask.shape[1])
    valid = torch.arange(size, device=mask.device) < counts[:, None]
    return VoxelSelection(order[:, :size], valid)


def gather_rows(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """x (B, N, C), index (B, M) → (B, M, C)."""
    if x.shape[0] == 1:  # whole rows at once
        return x[0].index_select(0, index[0]).unsqueeze(0)
    return x.gather(1, index[..., None].expand(-1, -1, x.shape[-1]))


def scatter_rows(x: torch.Tensor, selection: VoxelSelection, rows: torch.Tensor,
                 gathered: torch.Tensor | None) -> torch.Tensor:
    """x (B, N, C) with rows (B, S, C) written at the selected voxels → a new tensor; padding
    rows write back ``gathered`` (x's rows at ``selection.index``; None when nothing is padded)."""
    index = selection.index
    if selection.valid is not None:
        rows = torch.where(selection.valid[..., None], rows, gathered)
    if x.shape[0] == 1:
        return x[0].index_copy(0, index[0], rows[0]).unsqueeze(0)
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

    def forward(self, scene_embed, feats_flat, feat_shapes, scene_pos, proposals: VoxelSelection,
                ref_pix):
        """scene_embed, scene_pos (B, N, C); feats_flat (B, Nf, C); proposals: the voxels to
        update; ref_pix (B, N, 2) normalized (x, y) → (B, N, C)."""
        index = proposals.index
        ref = gather_rows(ref_pix, index).unsqueeze(2).expand(-1, -1, len(feat_shapes), -1)
        query = gather_rows(scene_embed, index)
        rows = self.attn(query, feats_flat, gather_rows(scene_pos, index), ref, feat_shapes)
        return scatter_rows(scene_embed, proposals, rows, query)


class VisibleVoxels(NamedTuple):
    """The decoder-grid voxels in the camera's field of view, per sample, as S rows."""
    selection: VoxelSelection    # (B, S) voxel indices, which are padding
    pos: torch.Tensor            # (B, S, C) their positional encoding
    ref: torch.Tensor            # (B, S, 1, 3) their (z, y, x) reference points


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
        scene_fov = gather_rows(scene_embed, visible.selection.index)
        unchanged = scene_fov if visible.selection.valid is not None else None  # for padding rows
        inst_queries = self.query_image_cross_defrom_attn(inst_queries, feats_flat, None, ref_2d,
                                                          feat_shapes)
        scene_fov = self.scene_query_cross_attn(scene_fov, inst_queries, inst_queries, visible.pos)
        scene_fov = self.scene_self_deform_attn(scene_fov, scene_embed, visible.pos, visible.ref,
                                                [scene_shape])
        scene_embed = scatter_rows(scene_embed, visible.selection, scene_fov, unchanged)
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
        self.num_voxels = num_voxels = x * y * (z // downsample_z)

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
        # constants of the forward, made once (no host data goes to the device in a forward)
        height, width = self.image_shape
        self.register_buffer('image_grid', pixel_grid(self.image_shape), persistent=False)
        self.register_buffer('image_size', torch.tensor([width, height], dtype=torch.float32),
                             persistent=False)  # (W, H)
        self.register_buffer('grid_size', torch.tensor(self.scene_shape), persistent=False)
        self.register_buffer('voxel_refs', normalized_voxel_grid(self.scene_shape).flatten(1).t().flip(-1),
                             persistent=False)  # (N, 3) as (z, y, x)
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
                projected_pix, fov_mask, sizes: SelectionSizes | None = None) -> list[torch.Tensor]:
        """
        Args:
            feats: image levels [(B, C, h_l, w_l)]; inst_queries (B, Q, C); pred_pts (B, Q, 2).
            depth: (B, H, W) metres; non-finite or ≤ 0 means no depth.
            cam_K (B, 3, 3); cam_pose (B, 4, 4) grid→camera; voxel_origin (B, 3) metres.
            projected_pix (B, Np, 2) int pixel (u, v) and fov_mask (B, Np) bool of the
            ``projection_shape`` grid voxels (C-order), as :func:`ssc_core.geometry.vox2pix`.
            sizes: rows of the voxel selections; None: read from the data (see the module).
        Returns:
            logits (B, num_classes, *scene_shape * project_scale): one per layer in training,
            only the last in eval.
        """
        with torch.autocast(depth.device.type, enabled=False):
            feats = [f.float() for f in feats]
            return self._forward(feats, inst_queries.float(), pred_pts.float(), depth.float(),
                                 cam_K.float(), cam_pose.float(), voxel_origin.float(),
                                 projected_pix, fov_mask, sizes)

    def selection_counts(self, depth, cam_K, cam_pose, voxel_origin, fov_mask) -> torch.Tensor:
        """(B, 2) int64: each sample's voxels in view and depth proposals, the least
        :class:`SelectionSizes` that leave nothing out (inputs as :meth:`forward`'s)."""
        with torch.autocast(depth.device.type, enabled=False):
            fov_mask, _, proposal_mask = self._selection_masks(
                depth.float(), cam_K.float(), cam_pose.float(), voxel_origin.float(), fov_mask)
            return torch.stack([fov_mask.sum(1), proposal_mask.sum(1)], 1)

    def _selection_masks(self, depth, cam_K, cam_pose, voxel_origin, fov_mask):
        """→ the decoder grid's FOV mask (B, N), the lifted depth (B, H*W, 3) and the proposal
        mask (B, N)."""
        if self.downsample_z != 1:
            fov_mask = self._downsample_z(fov_mask.unsqueeze(-1), torch.any).squeeze(-1)
        vol_pts, has_depth = self.depth_to_voxels(depth, cam_K, cam_pose, voxel_origin)
        return fov_mask, vol_pts, self.proposal_mask(vol_pts, has_depth)

    def _forward(self, feats, inst_queries, pred_pts, depth, cam_K, cam_pose, voxel_origin,
                 projected_pix, fov_mask, sizes):
        bs = depth.shape[0]
        feat_shapes = [tuple(f.shape[-2:]) for f in feats]
        feats_flat = torch.cat([f.flatten(2).transpose(1, 2) for f in feats], 1)
        fov_mask, vol_pts, proposal_mask = self._selection_masks(depth, cam_K, cam_pose,
                                                                 voxel_origin, fov_mask)
        if self.downsample_z != 1:  # the mean of Z pairs, as the authors' trilinear resize
            projected_pix = self._downsample_z(projected_pix.float(), torch.mean).to(projected_pix.dtype)
        ref_2d = pred_pts.unsqueeze(2).expand(-1, -1, len(feats), -1)
        ref_3d = self.instance_reference_points(pred_pts, vol_pts).unsqueeze(2).flip(-1)
        ref_pix = (projected_pix + 0.5) / self.image_size

        scene_pos = self.scene_pos().unsqueeze(0).expand(bs, -1, -1)
        scene_embed = self.scene_embed.weight.unsqueeze(0).expand(bs, -1, -1)
        proposals = select_voxels(proposal_mask, sizes and sizes.proposals)
        scene_embed = self.voxel_proposal(scene_embed, feats_flat, feat_shapes, scene_pos,
                                          proposals, ref_pix)

        in_view = select_voxels(fov_mask, sizes and sizes.visible)
        visible = VisibleVoxels(in_view, gather_rows(scene_pos, in_view.index),
                                self.voxel_refs[in_view.index].unsqueeze(2))

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

    def _downsample_z(self, values, reduce):
        """(B, Np, D) over the projection grid → (B, N, D): ``reduce`` over each Z group."""
        bs, _, dims = values.shape
        x, y, z = self.projection_shape
        f = self.downsample_z
        return reduce(values.reshape(bs, x, y, z // f, f, dims), 4).reshape(bs, -1, dims)

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
        keep = ((vol_pts >= 0) & (vol_pts < self.grid_size)).all(-1) & has_depth
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
        return (pts / (self.grid_size - 1)).clamp(0, 1)


def _cross(a, b):
    return torch.stack([a[..., 1] * b[..., 2] - a[..., 2] * b[..., 1],
                        a[..., 2] * b[..., 0] - a[..., 0] * b[..., 2],
                        a[..., 0] * b[..., 1] - a[..., 1] * b[..., 0]], -1)


def invert(m: torch.Tensor) -> torch.Tensor:
    """Inverse of (B, 3, 3) matrices or (B, 4, 4) affine transforms (last row 0 0 0 1), in
    closed form: ONNX has no inverse, and ``torch.linalg.inv`` on a GPU waits for its error
    check (no CUDA graph can hold it). LAPACK's inverse (the authors') lifts the same voxels on
    the reference frames.
    """
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
