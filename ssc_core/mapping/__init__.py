"""Semantic maps fused over time from per-frame completions (no ROS).

:class:`SemanticMap` (integrate frames at their poses, crop the map into a frame's grid, list its
voxels), the evidence rule (:mod:`~ssc_core.mapping.evidence`), files (:func:`save_map`,
:func:`load_map`, :func:`write_ply`) and the temporal protocol's pieces (:mod:`~ssc_core.mapping.temporal`).
"""
from .evidence import UNKNOWN
from .files import load_map, occupied_points, save_map, write_ply
from .semantic_map import MapError, PoseJump, SemanticMap

__all__ = ['UNKNOWN', 'MapError', 'PoseJump', 'SemanticMap', 'load_map', 'occupied_points', 'save_map',
           'write_ply']
