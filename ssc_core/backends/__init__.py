"""Inference backends behind :class:`ssc_core.predictor.Predictor`: one file each.

A backend runs the network on prepared inputs (see ``Predictor.prepare``) and returns
``(labels (B, X, Y, Z) uint8 numpy, logits (B, C, X, Y, Z) float32 torch or None)``.
"""
from .torch_backend import TorchBackend

BACKENDS = ('torch', 'torch_compile', 'onnxruntime')

__all__ = ['BACKENDS', 'TorchBackend']
