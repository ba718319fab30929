"""The authors' settings per dataset, and the config that rebuilds a network."""
import dataclasses
import re
from dataclasses import dataclass, field

import numpy as np

from .frame_inputs import check_calibration, check_grid_in_view, check_intrinsics
from .labels import (
    KITTI_360_CLASS_FREQ,
    KITTI_360_CLASSES,
    SEMANTIC_KITTI_CLASS_FREQ,
    SEMANTIC_KITTI_CLASSES,
    check_class_frequencies,
)
from .model import BACKBONES, PixelDecoderConfig, Symphonies
from .quoting import quote

ONNX_METADATA_KEY = 'ssc_ros.preset'  # an exported .onnx file carries its preset (JSON) under this key
ONNX_SIZES_KEY = 'ssc_ros.selection_sizes'  # ... and its voxel selections' sizes (JSON)


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
    weights (None: equal weights); a training setting, not part of what a checkpoint is for, so
    presets that differ only in it compare equal.
    """
    name: str
    model: ModelConfig
    class_names: tuple[str, ...]
    cam_K: tuple[tuple[float, ...], ...]
    cam_from_grid: tuple[tuple[float, ...], ...]
    voxel_origin: tuple[float, float, float] = (0.0, -25.6, -2.0)
    class_frequencies: tuple[float, ...] | None = field(default=None, compare=False)
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
    def from_dict(cls, data) -> 'Preset':
        """Rebuild a preset from :meth:`to_dict`'s output (e.g. a file's metadata), validated
        before anything is built: exact keys, bounded integers, finite numbers, a known backbone,
        and the plausibility rules frames are checked with (:mod:`~ssc_core.frame_inputs`: its
        camera at the network's image size, a rigid grid pose, a grid the camera sees; class
        frequencies as :func:`~ssc_core.labels.class_weights` needs them).

        Raises ValueError naming the field, what it must be and what it is.
        """
        data = _mapping(data, '', _PRESET_FIELDS, optional=('class_frequencies',))
        model = _mapping(data['model'], 'model', _MODEL_FIELDS)
        decoder = _mapping(model['pixel_decoder'], 'model.pixel_decoder', _DECODER_FIELDS)
        pixel_decoder = PixelDecoderConfig(**{
            key: _integer(decoder[key], f'model.pixel_decoder.{key}', *_DECODER_BOUNDS[key])
            for key in _DECODER_FIELDS})
        for key in ('num_heads', 'num_groups'):
            if pixel_decoder.conv_dim % getattr(pixel_decoder, key):
                raise ValueError(f'preset: model.pixel_decoder.{key} must divide conv_dim '
                                 f'{pixel_decoder.conv_dim}, got {getattr(pixel_decoder, key)}')
        backbone = model['backbone']
        if not isinstance(backbone, str) or backbone not in BACKBONES:
            raise ValueError(f'preset: model.backbone: expected one of {", ".join(BACKBONES)}, '
                             f'got {_short(backbone)}')
        config = ModelConfig(
            num_classes=_integer(model['num_classes'], 'model.num_classes', 2, 256),
            image_shape=_integers(model['image_shape'], 'model.image_shape', 2, 32, 4096),
            embed_dims=_integer(model['embed_dims'], 'model.embed_dims', 8, 1024),
            num_layers=_integer(model['num_layers'], 'model.num_layers', 1, 12),
            num_queries=_integer(model['num_queries'], 'model.num_queries', 1, 1000),
            scene_shape=_integers(model['scene_shape'], 'model.scene_shape', 3, 1, 1024),
            voxel_size=_number(model['voxel_size'], 'model.voxel_size', 1e-3, 100.0),
            volume_scale=_integer(model['volume_scale'], 'model.volume_scale', 1, 2),
            downsample_z=_integer(model['downsample_z'], 'model.downsample_z', 1, 4),
            backbone=backbone, pixel_decoder=pixel_decoder)
        _check_grid(config)
        names = data['class_names']
        if (not isinstance(names, list | tuple) or len(names) != config.num_classes
                or not all(isinstance(n, str) and 0 < len(n) <= 64 for n in names)
                or len(set(names)) != len(names)):
            raise ValueError(f'preset: class_names: expected {config.num_classes} distinct names '
                             f'of 1-64 characters, got {_short(names)}')
        name, description = data['name'], data['description']
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f'preset: name: expected 1-64 letters, digits, "_", "-" or ".", '
                             f'got {_short(name)}')
        if not isinstance(description, str) or len(description) > 2000:
            raise ValueError(f'preset: description: expected text of at most 2000 characters, '
                             f'got {_short(description)}')
        frequencies = data.get('class_frequencies')
        if frequencies is not None:
            frequencies = tuple(_number(v, 'class_frequencies', 0.0, 1e15) for v in
                                _sequence(frequencies, 'class_frequencies', config.num_classes))
        preset = cls(name=name, model=config, class_names=tuple(names),
                     class_frequencies=frequencies,
                     cam_K=_matrix_rows(data['cam_K'], 'cam_K', 3, 3),
                     cam_from_grid=_matrix_rows(data['cam_from_grid'], 'cam_from_grid', 4, 4),
                     voxel_origin=tuple(_number(v, 'voxel_origin', -1e4, 1e4) for v in
                                        _sequence(data['voxel_origin'], 'voxel_origin', 3)),
                     description=description)
        preset.check_plausible()
        return preset

    def check_plausible(self) -> None:
        """ValueError (``preset: <field>: ...``) for geometry or class frequencies that the
        rules for frames and training weights refuse."""
        try:
            K, pose = check_calibration(self.cam_K, self.cam_from_grid)
            check_intrinsics(K, self.image_shape)
            check_grid_in_view(K, pose, self.voxel_origin, self.scene_size, self.image_shape)
            if self.class_frequencies is not None:
                check_class_frequencies(self.class_frequencies)
        except ValueError as e:
            raise ValueError(f'preset: {e}') from None

    def differences(self, other: 'Preset') -> list[str]:
        """Names of the fields (``model.<field>`` for the network) in which two presets differ."""
        fields = [f'model.{f.name}' for f in dataclasses.fields(ModelConfig)
                  if getattr(self.model, f.name) != getattr(other.model, f.name)]
        return fields + [f.name for f in dataclasses.fields(Preset)
                         if f.compare and f.name not in ('name', 'model')
                         and getattr(self, f.name) != getattr(other, f.name)]


# --------------------------------------------------------------------------- preset schema
_PRESET_FIELDS = tuple(f.name for f in dataclasses.fields(Preset))
_MODEL_FIELDS = tuple(f.name for f in dataclasses.fields(ModelConfig))
_DECODER_FIELDS = tuple(f.name for f in dataclasses.fields(PixelDecoderConfig))
_DECODER_BOUNDS = {'conv_dim': (8, 1024), 'num_heads': (1, 64), 'num_layers': (1, 12),
                   'feedforward_channels': (8, 8192), 'total_num_levels': (3, 6),
                   'num_groups': (1, 1024)}
# Decoder voxels x width: 16.8M for the authors' presets; the bound keeps the scene embedding
# (and the activations it implies) under 512 MiB of float32.
_MAX_DECODER_ELEMENTS = 2 ** 27
_NAME = re.compile(r'[A-Za-z0-9_.\-]{1,64}')


def _short(value) -> str:
    """A value for an error message, cut to a readable length."""
    text = repr(value) if isinstance(value, str | int | float | bool | type(None)) else \
        f'a {type(value).__name__}'
    return text if len(text) <= 80 else text[:77] + '...'


def _mapping(value, where: str, fields: tuple[str, ...], optional: tuple[str, ...] = ()) -> dict:
    where = f'preset: {where}: ' if where else 'preset: '
    if not isinstance(value, dict):
        raise ValueError(f'{where}expected a mapping with keys {", ".join(fields)}, '
                         f'got {_short(value)}')
    missing = [k for k in fields if k not in value and k not in optional]
    extra = [quote(k, 40) for k in value if k not in fields]
    if missing or extra:
        raise ValueError(f'{where}missing keys [{", ".join(missing)}], '
                         f'unexpected keys [{", ".join(extra[:10])}]')
    return value


def _integer(value, where: str, low: int, high: int) -> int:
    if type(value) is not int or not low <= value <= high:
        raise ValueError(f'preset: {where}: expected an integer in [{low}, {high}], '
                         f'got {_short(value)}')
    return value


def _number(value, where: str, low: float, high: float) -> float:
    if type(value) not in (int, float) or not low <= value <= high:  # NaN fails the comparison
        raise ValueError(f'preset: {where}: expected a finite number in [{low:g}, {high:g}], '
                         f'got {_short(value)}')
    return float(value) + 0.0   # -0.0 as 0.0


def _sequence(value, where: str, length: int) -> list | tuple:
    if not isinstance(value, list | tuple) or len(value) != length:
        raise ValueError(f'preset: {where}: expected {length} values, got {_short(value)}')
    return value


def _integers(value, where: str, length: int, low: int, high: int) -> tuple[int, ...]:
    return tuple(_integer(v, where, low, high) for v in _sequence(value, where, length))


def _matrix_rows(value, where: str, rows: int, cols: int) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(_number(v, where, -1e6, 1e6) for v in _sequence(row, where, cols))
                 for row in _sequence(value, where, rows))


def _check_grid(config: ModelConfig) -> None:
    x, y, z = config.scene_shape
    if any(s % config.volume_scale for s in config.scene_shape) or \
            (z // config.volume_scale) % config.downsample_z:
        raise ValueError(f'preset: model.scene_shape {config.scene_shape} must be divisible by '
                         f'volume_scale {config.volume_scale} (and Z further by downsample_z '
                         f'{config.downsample_z})')
    decoder_voxels = x * y * z // (config.volume_scale ** 3 * config.downsample_z)
    if decoder_voxels * config.embed_dims > _MAX_DECODER_ELEMENTS:
        raise ValueError(f'preset: model.scene_shape {config.scene_shape} with embed_dims '
                         f'{config.embed_dims} needs a {decoder_voxels} x {config.embed_dims} scene '
                         f'embedding, more than the {_MAX_DECODER_ELEMENTS} elements allowed')


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

KITTI_LIDAR_HEIGHT = 1.73
"""Metres from the road up to KITTI's Velodyne, the grid frame of the KITTI presets (the voxel
grid's floor, ``voxel_origin`` z = -2 m, lies 0.27 m under the road)."""
GRID_HEIGHTS = {'semantic_kitti': KITTI_LIDAR_HEIGHT, 'small': KITTI_LIDAR_HEIGHT,
                'kitti_360': KITTI_LIDAR_HEIGHT}
"""Height (m) of each preset's grid frame above the ground. KITTI-360 was recorded with the same
station wagon and a roof-mounted Velodyne HDL-64E; its SSCBench grid has SemanticKITTI's floor
(z = -2 m), so KITTI's 1.73 m is taken for it too (an estimate: override it with the node's
grid_pose when it matters)."""


def base_from_grid(preset: Preset) -> np.ndarray:
    """(4, 4) default pose of ``preset``'s grid frame in a ground-level base frame (REP 105/103
    ``base_link`` or ``base_footprint``: x forward, y left, z up, on the ground): the grid frame
    :data:`GRID_HEIGHTS` metres above it; identity for presets of other names (the grid frame is
    then taken as the base frame)."""
    pose = np.eye(4)
    pose[2, 3] = GRID_HEIGHTS.get(preset.name, 0.0)
    return pose


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f'unknown preset {name!r}; known: {", ".join(PRESETS)}') from None
