"""The authors' settings per dataset, and the config that rebuilds a network."""
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from .labels import KITTI_360_CLASS_FREQ, KITTI_360_CLASSES, SEMANTIC_KITTI_CLASS_FREQ, SEMANTIC_KITTI_CLASSES
from .model import PixelDecoderConfig, Symphonies


@dataclass(frozen=True)
class ModelConfig:
    """Constructor arguments of :class:`~ssc_core.model.Symphonies`."""
    num_classes: int
    image_shape: tuple[int, int]
    embed_dims: int = 128
    num_layers: int = 3
    num_queries: int = 100
    scene_shape: tuple[int, int, int] = (256, 256, 32)
    voxel_size: float = 0.2
    volume_scale: int = 2
    downsample_z: int = 2
    backbone: str = 'resnet50'
    pixel_decoder: PixelDecoderConfig = field(default_factory=PixelDecoderConfig)

    def build(self) -> Symphonies:
        return Symphonies(**{f.name: getattr(self, f.name) for f in dataclasses.fields(self)})


@dataclass(frozen=True)
class Preset:
    """A dataset's network and geometry: what a checkpoint needs to be used.

    ``cam_K`` and ``cam_from_grid`` are the dataset's calibration, used for built-in samples
    and as defaults; voxel (0, 0, 0) has its corner at ``voxel_origin`` in the grid frame.
    ``class_frequencies``: voxel counts per class of the training split, for the cross-entropy
    weights (None: equal weights).
    """
    name: str
    model: ModelConfig
    class_names: tuple[str, ...]
    cam_K: tuple[tuple[float, ...], ...]
    cam_from_grid: tuple[tuple[float, ...], ...]
    voxel_origin: tuple[float, float, float] = (0.0, -25.6, -2.0)
    class_frequencies: tuple[float, ...] | None = None
    description: str = field(default='', compare=False)

    def __post_init__(self):
        freq = self.class_frequencies
        if freq is not None and len(freq) != len(self.class_names):
            raise ValueError(f'preset {self.name}: {len(freq)} class frequencies for '
                             f'{len(self.class_names)} classes')

    @property
    def scene_size(self) -> tuple[float, float, float]:
        return tuple(s * self.model.voxel_size for s in self.model.scene_shape)

    @property
    def image_shape(self) -> tuple[int, int]:
        return self.model.image_shape

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> 'Preset':
        data = dict(data)
        model = dict(data.pop('model'))
        model['pixel_decoder'] = PixelDecoderConfig(**model.get('pixel_decoder', {}))
        for key in ('image_shape', 'scene_shape'):
            model[key] = tuple(model[key])
        data['class_names'] = tuple(data['class_names'])
        data['voxel_origin'] = tuple(data['voxel_origin'])
        if data.get('class_frequencies') is not None:
            data['class_frequencies'] = tuple(data['class_frequencies'])
        for key in ('cam_K', 'cam_from_grid'):
            data[key] = tuple(tuple(row) for row in data[key])
        return cls(model=ModelConfig(**model), **data)


def _rows(m) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in np.asarray(m))


# KITTI odometry sequence 00-02 calibration: P2[:3, :3] and Tr (velodyne → camera 0).
_KITTI_K = _rows([[707.0912, 0, 601.8873], [0, 707.0912, 183.1104], [0, 0, 1]])
_KITTI_TR = _rows([[-1.857739e-03, -9.999660e-01, -8.039975e-03, -4.784030e-03],
                   [-6.481466e-03, 8.051860e-03, -9.999466e-01, -7.337429e-02],
                   [9.999773e-01, -1.805529e-03, -6.496204e-03, -3.339968e-01], [0, 0, 0, 1]])
# SSCBench-KITTI-360: perspective camera 00 and the inverse of its camera → velodyne matrix.
_KITTI_360_K = _rows([[552.554261, 0, 682.049453], [0, 552.554261, 238.769549], [0, 0, 1]])
_KITTI_360_CAM_TO_VELO = np.array([[0.04307104361, -0.08829286498, 0.995162929, 0.8043914418],
                                   [-0.999004371, 0.007784614041, 0.04392796942, 0.2993489574],
                                   [-0.01162548558, -0.9960641394, -0.08786966659, -0.1770225824],
                                   [0, 0, 0, 1]])

SEMANTIC_KITTI = Preset(
    name='semantic_kitti',
    model=ModelConfig(num_classes=20, image_shape=(370, 1220)),
    class_names=SEMANTIC_KITTI_CLASSES, cam_K=_KITTI_K, cam_from_grid=_KITTI_TR,
    class_frequencies=tuple(SEMANTIC_KITTI_CLASS_FREQ.tolist()),
    description='SemanticKITTI, image 370x1220, 20 classes (the authors\' semantic_kitti.yaml)')

KITTI_360 = Preset(
    name='kitti_360',
    model=ModelConfig(num_classes=19, image_shape=(376, 1408)),
    class_names=KITTI_360_CLASSES, cam_K=_KITTI_360_K,
    cam_from_grid=_rows(np.linalg.inv(_KITTI_360_CAM_TO_VELO)),
    class_frequencies=tuple(KITTI_360_CLASS_FREQ.tolist()),
    description='SSCBench-KITTI-360, image 376x1408, 19 classes (the authors\' kitti_360.yaml)')

# KITTI's camera at 320x96 (scaled from the 1241x376 odometry images).
_SMALL_K = _rows(np.diag([320 / 1241, 96 / 376, 1.0]) @ np.array(_KITTI_K))

SMALL = Preset(
    name='small',
    model=ModelConfig(num_classes=20, image_shape=(96, 320), embed_dims=32, num_queries=20,
                      scene_shape=(128, 128, 16), voxel_size=0.4, backbone='resnet10t',
                      pixel_decoder=PixelDecoderConfig(conv_dim=64, num_heads=4, num_layers=1,
                                                       feedforward_channels=128, num_groups=8)),
    class_names=SEMANTIC_KITTI_CLASSES, cam_K=_SMALL_K, cam_from_grid=_KITTI_TR,
    class_frequencies=tuple(SEMANTIC_KITTI_CLASS_FREQ.tolist()),
    description='reduced Symphonies (ResNet-10t, width 32, 0.4 m voxels, 320x96 images) for CPU '
                'training and the built-in model')

PRESETS = {p.name: p for p in (SEMANTIC_KITTI, KITTI_360, SMALL)}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f'unknown preset {name!r}; known: {", ".join(PRESETS)}') from None
