"""Per-token work over the scene's voxel queries, a slice of tokens at a time.

Feed-forward blocks and deformable attention treat every token on its own, so at inference on a
CPU they run over slices of the token axis: the same result per token, without the 0.2–0.5 GB
intermediates (FFN hidden layers, sampled values) that the whole axis at once would hold — the
peak host memory of a full-size frame. Graphs being exported (ONNX) take the same slices (the
token axes have fixed sizes there, see :class:`~ssc_core.model.decoder.SelectionSizes`).
Training (gradients keep every slice's intermediates anyway), GPUs (where a frame is bound by
kernel launches, not memory) and ``torch.compile`` (which plans memory itself) take the whole
axis.
"""
import torch

CHUNK_BYTES = 64 * 2**20  # the largest intermediate a slice may hold


def slice_plan(tokens: torch.Tensor, bytes_per_token: int) -> tuple[int, int] | None:
    """(tokens per slice, number of slices) for the tokens (B, N, ...) when their largest
    intermediate holds ``bytes_per_token`` per token; None where they are taken at once (see
    above, or N fits)."""
    if torch.is_grad_enabled() or tokens.device.type != 'cpu':
        return None
    if torch.compiler.is_compiling() and not torch.compiler.is_exporting():
        return None
    num = tokens.shape[1]
    step = max(1, CHUNK_BYTES // max(1, bytes_per_token))
    return (step, -(-num // step)) if step < num else None


def in_slices(fn, tokens: torch.Tensor, *per_token: torch.Tensor | None,
              bytes_per_token: int) -> torch.Tensor:
    """``fn(tokens, *per_token)`` over slices of dim 1 (see :func:`slice_plan`), concatenated.
    tokens: (B, N, ...); per_token: (B, N, ...) tensors sliced alike, or None."""
    plan = slice_plan(tokens, bytes_per_token)
    if plan is None:
        return fn(tokens, *per_token)
    step, count = plan
    inputs = (tokens, *per_token)
    return torch.cat([fn(*(t if t is None else t[:, i * step:(i + 1) * step] for t in inputs))
                      for i in range(count)], dim=1)
