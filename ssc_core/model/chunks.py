"""Per-token work over the scene's 262,144 voxel queries, a slice of tokens at a time.

Feed-forward blocks and deformable attention treat every token on its own, so at inference on a
CPU they run over slices of the token axis: the same result per token, without the 0.5–1 GB
intermediates (FFN hidden layers, sampled values) that the whole axis at once would hold — the
peak host memory of a full-size frame. Training (gradients keep every slice's intermediates
anyway), GPUs (where a frame is bound by kernel launches, not memory) and graphs being traced
by ``torch.compile``/``torch.export`` (the number of visible voxels is data-dependent; the
compilers plan memory themselves) take the whole axis.
"""
import torch

CHUNK_BYTES = 64 * 2**20  # the largest intermediate a slice may hold


def tokens_per_slice(tokens: torch.Tensor, bytes_per_token: int) -> int | None:
    """How many of the tokens (B, N, ...) one slice takes when its largest intermediate holds
    ``bytes_per_token`` per token; None where they are taken at once (see above, or N fits)."""
    if torch.is_grad_enabled() or tokens.device.type != 'cpu' or torch.compiler.is_compiling():
        return None
    step = max(1, CHUNK_BYTES // max(1, bytes_per_token))
    return step if step < tokens.shape[1] else None


def in_slices(fn, tokens: torch.Tensor, *per_token: torch.Tensor | None,
              bytes_per_token: int) -> torch.Tensor:
    """``fn(tokens, *per_token)`` over slices of dim 1 (see :func:`tokens_per_slice`),
    concatenated. tokens: (B, N, ...); per_token: (B, N, ...) tensors sliced alike, or None."""
    step = tokens_per_slice(tokens, bytes_per_token)
    if step is None:
        return fn(tokens, *per_token)
    parts = [fn(tokens[:, i:i + step], *(t if t is None else t[:, i:i + step] for t in per_token))
             for i in range(0, tokens.shape[1], step)]
    return torch.cat(parts, dim=1)
