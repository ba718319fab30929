"""PyTorch with the forward captured as a CUDA graph and replayed: one launch per frame instead
of ~1,000 kernel launches from Python.

A graph holds fixed shapes and fixed memory, so each frame's inputs are copied into the graph's
own input tensors and the forward runs with fixed selection sizes (:mod:`.static_shapes`). One
graph is captured per key — input shapes and sizes: one per calibration and proposal step — and
the last few are kept, sharing one memory pool (they never run at once, and each replay's
outputs are used before the next).
"""
import logging
from collections import OrderedDict

import torch

from ..model import Symphonies
from .static_shapes import fixed_sizes
from .torch_backend import TorchBackend

log = logging.getLogger('ssc_core.cuda_graph')
WARMUP_RUNS = 2  # before a capture: cuBLAS/cuDNN handles, algorithms and the allocator settle


class CapturedForward:
    """One forward of fixed input shapes and selection sizes, replayed on new inputs.

    On CUDA a CUDA graph, captured after ``WARMUP_RUNS`` runs on a side stream (a capture
    records kernels without running them); on other devices the forward runs eagerly on each
    call, on the same input tensors and into the same output tensors, so this bookkeeping runs
    (and is tested) without a GPU.

    Args:
        forward: ``forward(**inputs)`` → list of tensors. inputs: an example of the inputs it
            is captured for (copied). pool: a CUDA graph memory pool to share, or None.
    """

    def __init__(self, forward, inputs: dict[str, torch.Tensor], pool=None):
        self.forward = forward
        self.inputs = {k: v.clone() for k, v in inputs.items()}
        self.graph = self.outputs = None
        device = next(iter(inputs.values())).device
        if device.type != 'cuda':
            return
        stream = torch.cuda.Stream(device)
        stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(stream):
            for _ in range(WARMUP_RUNS):
                forward(**self.inputs)
        torch.cuda.current_stream(device).wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph, pool=pool):
            self.outputs = forward(**self.inputs)

    @property
    def pool(self):
        return self.graph.pool() if self.graph is not None else None

    def __call__(self, inputs: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """The outputs for ``inputs`` (shapes as captured): tensors the next call overwrites."""
        for key, value in inputs.items():
            self.inputs[key].copy_(value)
        if self.graph is not None:
            self.graph.replay()
        elif self.outputs is None:
            self.outputs = self.forward(**self.inputs)
        else:
            for output, new in zip(self.outputs, self.forward(**self.inputs), strict=True):
                output.copy_(new)
        return self.outputs


def graph_key(inputs: dict[str, torch.Tensor], sizes) -> tuple:
    """What a captured forward is fixed to: each input's shape and dtype, and the sizes."""
    return (*((k, tuple(v.shape), v.dtype) for k, v in inputs.items()), tuple(sizes))


class CudaGraphBackend(TorchBackend):
    """:class:`TorchBackend` (eager layers, ``precision``) with the forward captured as CUDA graphs.

    Each frame costs one read of two counts from the GPU (the selection sizes), the copy of its
    inputs into the graph's and one replay; a new calibration or proposal step costs a capture
    (warm-up runs and one recorded forward). On other devices (``cpu``) the same bookkeeping
    runs the forward eagerly: for tests. Where a capture fails the backend says why in a
    warning and runs eager from then on.

    Args:
        max_graphs: graphs kept (the least recently used goes first).
    """

    name = 'torch_cudagraph'

    def __init__(self, model: Symphonies, device='cuda', precision: str = 'fp32', max_graphs: int = 4):
        super().__init__(model, device, precision)
        self.max_graphs = max_graphs
        self.graphs: OrderedDict[tuple, CapturedForward] = OrderedDict()
        self.captures = 0
        self.capturing = True

    def describe(self) -> str:
        if not self.capturing:
            mode = 'eager, capture failed'
        else:
            mode = 'CUDA graphs' if self.device.type == 'cuda' else 'fixed shapes, no graph off CUDA'
        return f'torch on {self.device} ({self.precision}, {mode})'

    def run(self, inputs: dict[str, torch.Tensor], want_logits: bool = True):
        labels, logits = super().run(inputs, want_logits)
        return labels, (logits.clone() if want_logits else None)  # the graph's own, overwritten next

    def _network(self, inputs):
        if not self.capturing:
            return self.model(**inputs)
        sizes = fixed_sizes(self.model, inputs)
        key = graph_key(inputs, sizes)
        if key not in self.graphs:
            while len(self.graphs) >= self.max_graphs:
                self.graphs.popitem(last=False)
            pool = next(iter(self.graphs.values())).pool if self.graphs else None
            try:
                captured = CapturedForward(lambda **kw: self.model(**kw, sizes=sizes), inputs, pool)
            except RuntimeError as e:
                log.warning('CUDA graph capture failed, running eager instead: %s',
                            str(e).strip().splitlines()[0])
                self.graphs.clear()
                self.capturing = False
                return self.model(**inputs)
            self.captures += 1
            log.info('captured the forward for %s (%d graphs kept)', sizes, len(self.graphs) + 1)
            self.graphs[key] = captured
        self.graphs.move_to_end(key)
        return self.graphs[key](inputs)
