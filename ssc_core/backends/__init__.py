"""Inference backends behind :class:`ssc_core.predictor.Predictor`: one file each, each a
:class:`Backend` (``base.py``)."""
from .base import Backend, NonFiniteOutput
from .cuda_graph_backend import CudaGraphBackend
from .torch_backend import TorchBackend

BACKENDS = ('torch', 'torch_compile', 'torch_cudagraph', 'onnxruntime')

__all__ = ['BACKENDS', 'Backend', 'CudaGraphBackend', 'NonFiniteOutput', 'TorchBackend']
