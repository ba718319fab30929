"""Inference backends behind :class:`ssc_core.predictor.Predictor`: one file each, each a
:class:`Backend` (``base.py``)."""
from .base import Backend, NonFiniteOutput
from .torch_backend import TorchBackend

BACKENDS = ('torch', 'torch_compile', 'onnxruntime')

__all__ = ['BACKENDS', 'Backend', 'NonFiniteOutput', 'TorchBackend']
