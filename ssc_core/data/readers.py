"""The dataset readers by name: each lists :class:`FrameRecord` s of one on-disk layout."""
from .kitti_360 import kitti_360_frames
from .semantic_kitti import semantic_kitti_frames

READERS = {'semantic_kitti': semantic_kitti_frames, 'kitti_360': kitti_360_frames}
