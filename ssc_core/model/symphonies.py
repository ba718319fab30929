"""Symphonies (Jiang et al., CVPR 2024): camera + depth → semantic voxel grid."""
from collections.abc import Sequence

import torch
from torch import nn

from .decoder import SelectionSizes, SymphoniesDecoder
from .image_encoder import ImageEncoder, PixelDecoderConfig


class Symphonies(nn.Module):
    """The full network with the authors' parameter names (``encoder.*``, ``decoder.*``).

    Args:
        num_classes: output classes including empty (20 SemanticKITTI, 19 KITTI-360).
        image_shape: (H, W) the network is built for.
        embed_dims: decoder width; num_layers: Symphonies layers; num_queries: instances.
        scene_shape: output voxels (X, Y, Z); voxel_size: metres; volume_scale: decoder grid
            reduction; downsample_z: extra Z reduction of the decoder grid.
        backbone: timm model name; pixel_decoder: MaskDINO pixel decoder widths.
    """

    def __init__(self, num_classes: int, image_shape: Sequence[int], embed_dims: int = 128,
                 num_layers: int = 3, num_queries: int = 100,
                 scene_shape: Sequence[int] = (256, 256, 32), voxel_size: float = 0.2,
                 volume_scale: int = 2, downsample_z: int = 2, backbone: str = 'resnet50',
                 pixel_decoder: PixelDecoderConfig | None = None):
        super().__init__()
        self.num_classes = num_classes
        self.image_shape = tuple(image_shape)
        self.scene_shape = tuple(scene_shape)
        self.volume_scale = volume_scale
        self.encoder = ImageEncoder(embed_dims, backbone, pixel_decoder or PixelDecoderConfig(),
                                    num_queries)
        self.decoder = SymphoniesDecoder(embed_dims, num_classes, num_layers, num_levels=3,
                                         scene_shape=scene_shape, project_scale=volume_scale,
                                         image_shape=image_shape, voxel_size=voxel_size,
                                         downsample_z=downsample_z)

    def forward(self, img: torch.Tensor, depth: torch.Tensor, cam_K: torch.Tensor,
                cam_pose: torch.Tensor, voxel_origin: torch.Tensor, projected_pix: torch.Tensor,
                fov_mask: torch.Tensor, sizes: SelectionSizes | None = None) -> list[torch.Tensor]:
        """
        Args:
            img: (B, 3, H, W) ImageNet-normalized RGB; depth: (B, H, W) metres.
            cam_K: (B, 3, 3); cam_pose: (B, 4, 4) grid frame → camera frame;
            voxel_origin: (B, 3) grid-frame position of voxel (0, 0, 0)'s corner.
            projected_pix: (B, Np, 2) int64 and fov_mask: (B, Np) bool for the voxels of the
                grid at ``volume_scale`` (see :func:`ssc_core.geometry.vox2pix`).
            sizes: rows of the decoder's voxel selections (field of view, depth proposals), at
                least :meth:`selection_counts`; given, no shape in the forward depends on the
                data (``torch.compile(fullgraph=True)``, CUDA graphs, exported graphs); None:
                read from the data.
        Returns:
            class logits (B, num_classes, X, Y, Z): the last layer's in eval; one per layer in
            training.
        """
        expected = (img.shape[0], 3, *self.image_shape)
        if tuple(img.shape) != expected:
            raise ValueError(f'img: expected shape {expected}, got {tuple(img.shape)}')
        if tuple(depth.shape) != (img.shape[0], *self.image_shape):
            raise ValueError(f'depth: expected shape {(img.shape[0], *self.image_shape)}, '
                             f'got {tuple(depth.shape)}')
        feats, queries, pred_pts = self.encoder(img)
        return self.decoder(feats, queries, pred_pts, depth, cam_K, cam_pose, voxel_origin,
                            projected_pix, fov_mask, sizes)

    def selection_counts(self, depth, cam_K, cam_pose, voxel_origin, fov_mask,
                         **_) -> torch.Tensor:
        """(B, 2) int64: each frame's decoder voxels in view and voxels holding a depth point
        (inputs as :meth:`forward`'s; the image is not needed)."""
        return self.decoder.selection_counts(depth, cam_K, cam_pose, voxel_origin, fov_mask)
