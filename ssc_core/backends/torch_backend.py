"""PyTorch, eager or ``torch.compile``d, optionally under fp16/bf16 autocast."""
import logging

import numpy as np
import torch
from torch._dynamo.exc import BackendCompilerFailed

from ..model import Symphonies
from ..model.decoder import head_form
from .base import check_finite
from .host_memory import keep_freed_memory
from .static_shapes import fixed_sizes

log = logging.getLogger('ssc_core.torch')
PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}
COMPILE_MODES = ('default', 'reduce-overhead', 'max-autotune', 'max-autotune-no-cudagraphs')


class TorchBackend:
    """Runs a :class:`Symphonies` module on ``device``.

    Args:
        precision: 'fp32', or 'fp16'/'bf16' autocast of the image encoder (the decoder's
            geometry and attention stay fp32, like the authors').
        optimize: compute the same function faster. On CPU: the sub-pixel GEMM class head,
            class labels by a running maximum and host memory kept for the next frame
            (:mod:`.host_memory`). On CUDA these are slower than cuDNN's transposed convolutions
            and ``argmax`` (H200: 57 vs 48 ms per full-size frame), so there it runs the
            authors' layers. False runs the layers exactly as the authors wrote them (the
            benchmark's baseline).
        compile: ``torch.compile`` the network with weights frozen as constants (Inductor
            folds and pre-packs them) as one graph of fixed shapes
            (:mod:`.static_shapes`), compiled on the first frame: minutes on a CPU, less
            once Inductor's on-disk cache has it; a second proposal size compiles once more,
            with that size symbolic. Where compiling fails (no C++ compiler, say) the backend
            says why in a warning and runs eager.
        compile_mode: one of :data:`COMPILE_MODES`, ``torch.compile``'s modes (on a GPU,
            ``reduce-overhead`` replays CUDA graphs, ``max-autotune`` tunes kernels for minutes).
    """

    name = 'torch'
    max_batch = None

    def __init__(self, model: Symphonies, device='cpu', precision: str = 'fp32', optimize: bool = True,
                 compile: bool = False, compile_mode: str = 'default'):
        if precision not in PRECISIONS:
            raise ValueError(f'precision: expected one of {list(PRECISIONS)}, got {precision!r}')
        if compile_mode not in COMPILE_MODES:
            raise ValueError(f'compile_mode: expected one of {list(COMPILE_MODES)}, got {compile_mode!r}')
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.precision = precision
        self.optimize = optimize
        self.subpixel_head = optimize and self.device.type == 'cpu'
        if self.subpixel_head:
            keep_freed_memory()
        self.compiled = compile
        self.compile_mode = compile_mode
        self._forward = self.model
        if compile:
            from torch._inductor import list_mode_options
            options = {**list_mode_options(compile_mode), 'freezing': True}
            self._forward = torch.compile(self.model, options=options)

    def describe(self) -> str:
        if self.compiled:
            mode = 'compiled' + ('' if self.compile_mode == 'default' else f' {self.compile_mode}')
        else:
            mode = 'eager' if self.optimize else "eager, authors' layers"
        return f'torch on {self.device} ({self.precision}, {mode})'

    @torch.no_grad()
    def run(self, inputs: dict[str, torch.Tensor], want_logits: bool = True):
        dtype = PRECISIONS[self.precision]
        # no cache of cast weights: a CUDA graph may not hold one (a forward casts each once)
        with (torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None,
                             cache_enabled=False),
              head_form(self.model.decoder.cls_head, self.subpixel_head)):
            logits = self._network(inputs)[-1].float()
        check_finite(logits)
        labels = class_labels(logits) if logits.device.type == 'cpu' else logits.argmax(1).to(torch.uint8)
        return labels.cpu().numpy(), (logits if want_logits else None)

    def _network(self, inputs):
        if not self.compiled:
            return self._forward(**inputs)
        try:
            return self._forward(**inputs, sizes=fixed_sizes(self.model, inputs))
        except BackendCompilerFailed as e:  # only a compiled forward raises it
            log.warning('torch.compile failed, running eager instead: %s', str(e).strip().splitlines()[0])
            self._forward, self.compiled = self.model, False
            return self.model(**inputs)


def class_labels(logits: torch.Tensor) -> torch.Tensor:
    """logits (B, C, ...) → (B, ...) uint8 index of the largest, the first on ties (like argmax).

    A running maximum over the C class slices: several times faster than ``argmax(1)`` on
    channels-first volumes on CPUs (on a GPU ``argmax`` is faster; both return the first maximum).
    """
    best = logits[:, 0].clone()
    labels = torch.zeros(best.shape, dtype=torch.uint8, device=logits.device)
    for c in range(1, logits.shape[1]):
        higher = logits[:, c] > best
        best = torch.where(higher, logits[:, c], best)
        labels.masked_fill_(higher, c)
    return labels


def to_numpy(inputs: dict) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            for k, v in inputs.items()}
