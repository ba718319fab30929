"""PyTorch eager, optionally under fp16/bf16 autocast."""
import numpy as np
import torch

from ..model import Symphonies

PRECISIONS = {'fp32': None, 'fp16': torch.float16, 'bf16': torch.bfloat16}


class TorchBackend:
    """Runs a :class:`Symphonies` module on ``device``; precision 'fp32', 'fp16' or 'bf16'."""

    name = 'torch'

    def __init__(self, model: Symphonies, device='cpu', precision: str = 'fp32'):
        if precision not in PRECISIONS:
            raise ValueError(f'precision: expected one of {list(PRECISIONS)}, got {precision!r}')
        self.device = torch.device(device)
        self.model = model.eval().to(self.device)
        self.precision = precision

    def describe(self) -> str:
        return f'torch on {self.device} ({self.precision})'

    @torch.no_grad()
    def run(self, inputs: dict[str, torch.Tensor], want_logits: bool = True):
        dtype = PRECISIONS[self.precision]
        with torch.autocast(self.device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            logits = self.model(**inputs)[-1].float()
        labels = logits.argmax(1).to(torch.uint8).cpu().numpy()
        return labels, (logits if want_logits else None)


def to_numpy(inputs: dict) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy() if isinstance(v, torch.Tensor) else np.asarray(v)
            for k, v in inputs.items()}
