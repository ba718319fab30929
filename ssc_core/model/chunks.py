"""Per-token work over the scene's voxel queries, a slice of tokens at a time.

Feed-forward blocks and deformable attention treat every token on its own, so at inference on a
CPU they run over slices of the token axis: the same result per token, without the 0.2–0.5 GB
intermediates (FFN hidden layers, sampled values) that the whole axis at once would hold — the
peak host memory of a full-size frame. Graphs being exported (ONNX) take a data-dependent axis
(the visible voxels) in a fixed number of equal slices whose size the graph computes, once (not
again inside a slice). Training (gradients keep every slice's intermediates anyway), GPUs (where
a frame is bound by kernel launches, not memory) and ``torch.compile`` (which plans memory
itself) take the whole axis.
"""
import contextvars

import torch

CHUNK_BYTES = 64 * 2**20  # the largest intermediate a slice may hold
EXPORTED_SLICES = 8  # slices of a data-dependent token axis in an exported graph
_inside_exported_slice = contextvars.ContextVar('inside_exported_slice', default=False)


def slice_plan(tokens: torch.Tensor, bytes_per_token: int) -> tuple[int, int] | None:
    """(tokens per slice, number of slices) for the tokens (B, N, ...) when their largest
    intermediate holds ``bytes_per_token`` per token; None where they are taken at once (see
    above, or N fits). While exporting, the size may be symbolic."""
    if torch.is_grad_enabled() or tokens.device.type != 'cpu':
        return None
    num = tokens.shape[1]
    if torch.compiler.is_exporting():
        if isinstance(num, int) or _inside_exported_slice.get():
            return None
        return (num + EXPORTED_SLICES - 1) // EXPORTED_SLICES, EXPORTED_SLICES
    if torch.compiler.is_compiling():
        return None
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
    num = tokens.shape[1]
    inputs = (tokens, *per_token)
    if isinstance(num, int):
        return torch.cat([fn(*(t if t is None else t[:, i * step:(i + 1) * step] for t in inputs))
                          for i in range(count)], dim=1)
    # a symbolic size: slices of one size, zero rows appended up to count * step and cut off after
    padded = [t if t is None else _append_zero_rows(t, count * step - num) for t in inputs]
    inside = _inside_exported_slice.set(True)
    try:
        parts = [fn(*(t if t is None else t.narrow(1, i * step, step) for t in padded))
                 for i in range(count)]
    finally:
        _inside_exported_slice.reset(inside)
    return torch.cat(parts, dim=1)[:, :num]


def _append_zero_rows(x: torch.Tensor, rows) -> torch.Tensor:
    """x (B, N, ...) → (B, N + rows, ...), the new rows zero."""
    return torch.cat([x, x.new_zeros((x.shape[0], rows, *x.shape[2:]))], dim=1)
