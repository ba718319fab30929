"""A reduced Symphonies (same architecture, small widths) for fast tests."""
import numpy as np

from ssc_core.model import PixelDecoderConfig
from ssc_core.presets import SEMANTIC_KITTI, ModelConfig, Preset

SMALL_MODEL = ModelConfig(
    num_classes=6, image_shape=(64, 200), embed_dims=32, num_layers=3, num_queries=10,
    scene_shape=(32, 32, 16), voxel_size=1.6, backbone='resnet18',
    pixel_decoder=PixelDecoderConfig(conv_dim=64, num_heads=4, num_layers=1,
                                     feedforward_channels=128, num_groups=8))

_K = np.array(SEMANTIC_KITTI.cam_K) * np.array([[200 / 1220], [64 / 370], [1]])
SMALL_PRESET = Preset(name='small_test', model=SMALL_MODEL,
                      class_names=('empty', 'car', 'road', 'building', 'vegetation', 'pole'),
                      cam_K=tuple(map(tuple, _K)), cam_from_grid=SEMANTIC_KITTI.cam_from_grid)


def small_frame(seed: int):
    """A random RGB image and a plausible depth map at the small preset's size."""
    rng = np.random.default_rng(seed)
    height, width = SMALL_MODEL.image_shape
    image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    depth = rng.uniform(2, 40, (height, width)).astype(np.float32)
    return image, depth, np.array(SMALL_PRESET.cam_K), np.array(SMALL_PRESET.cam_from_grid)
