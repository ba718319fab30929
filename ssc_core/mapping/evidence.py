"""Per-voxel class evidence: log-likelihood accumulation with clamping, kept as top-K slots.

The rule (Kimera-Semantics' Bayesian update with octomap's clamping, for many classes). Each
voxel holds a log-likelihood L(c) per class. An observation of class z with confidence p, under
the measurement model P(z | c) = p if z = c else (1 - p) / (C - 1), adds

    w = log(p (C - 1) / (1 - p))                                   to L(z)

(every other class gains nothing, up to a constant common to all). L is kept relative to its best
class and clamped, as octomap clamps log-odds, so that a voxel can change its mind:

    D(c) = min(max_c' L(c') - L(c), clamp)        the deficit of class c to the best class

A class at the clamp overtakes the best after ``clamp / w`` observations, whatever came before
(a car that drove away is cleared by the "empty" its place is then seen as). Old evidence
decays: D ← D · f, towards "no evidence" (every D = 0).

Only the K classes with the most evidence are kept per voxel ("slots", the best first); every
other class shares one deficit, ``rest``: exact for classes never observed, and for a class evicted
from a slot a lower bound of its evidence. With K = C the rule is exact.

Deficits are integers in units of ``clamp / CLAMP`` nats (0..CLAMP), so a voxel's state is one
uint8 row of width 2K + 1: K class ids (EMPTY_SLOT where unused), their K deficits, then rest.
The best class is always in slot 0 (deficit 0); a voxel has evidence when rest > 0.
"""
import math

import torch

CLAMP = 250
"""The clamp in deficit units."""
EMPTY_SLOT = 255
UNKNOWN = 255
"""The label of a voxel without evidence (as IGNORE_LABEL, what metrics and outputs skip)."""


def observation_weight(probability, num_classes: int):
    """w = log(p (C - 1) / (1 - p)) nats: the evidence an observation of confidence ``p`` adds to
    its class. p is clipped to [1/C, 1 - 1e-4]: an observation no better than chance adds nothing."""
    if isinstance(probability, torch.Tensor):
        p = probability.float().clamp(1.0 / num_classes, 1 - 1e-4)
        return torch.log(p * (num_classes - 1) / (1 - p))
    p = min(max(float(probability), 1.0 / num_classes), 1 - 1e-4)
    return math.log(p * (num_classes - 1) / (1 - p))


def to_units(weight, unit: float):
    """Evidence in nats (a float or a tensor) → deficit units, rounded, within 0..CLAMP."""
    if isinstance(weight, torch.Tensor):
        return (weight / unit).round().clamp(0, CLAMP).to(torch.int16)
    return int(min(max(round(weight / unit), 0), CLAMP))


def empty_state(shape, slots: int, device=None) -> torch.Tensor:
    """``shape + (2 * slots + 1,)`` uint8 state of voxels without evidence."""
    state = torch.zeros((*shape, 2 * slots + 1), dtype=torch.uint8, device=device)
    state[..., :slots] = EMPTY_SLOT
    return state


def slots_of(state: torch.Tensor) -> int:
    return (state.shape[-1] - 1) // 2


def observe(state: torch.Tensor, label: torch.Tensor, weight,
            seen: torch.Tensor | None = None) -> torch.Tensor:
    """The state after one observation per voxel: ``state`` (N, 2K + 1) uint8, class ``label``
    (N,) with ``weight`` deficit units (an int, or (N,) integers); voxels where ``seen`` (N,) bool
    is False keep their state. Elementwise over N (slots unrolled), so it fuses into one loop
    under torch.compile."""
    k = slots_of(state)
    classes = [state[:, i] for i in range(k)]
    d = [state[:, k + i].to(torch.int16) for i in range(k)]
    rest = state[:, 2 * k].to(torch.int16)
    z = label.to(torch.uint8)
    w = weight.to(torch.int16) if isinstance(weight, torch.Tensor) else weight
    match = [c == z for c in classes]
    found = match[0]
    for m in match[1:]:
        found = found | m
    # a class not in a slot takes the worst slot after the first (an unused one first) with the
    # deficit of rest; with one slot, the first, if it overtakes the best class there
    start = min(1, k - 1)
    worst_value = torch.where(classes[start] == EMPTY_SLOT, CLAMP + 1, d[start])
    worst = torch.full_like(z, start)
    for i in range(start + 1, k):
        value = torch.where(classes[i] == EMPTY_SLOT, CLAMP + 1, d[i])
        worse = value > worst_value
        worst = torch.where(worse, i, worst)
        worst_value = torch.where(worse, value, worst_value)
    if k == 1:
        behind = ~found & (w <= rest)    # it does not overtake: nothing changes
        seen = ~behind if seen is None else seen & ~behind
    slot = []
    d_z = torch.zeros_like(rest)
    for i in range(k):
        take = (worst == i) & ~found
        classes[i] = torch.where(take, z, classes[i])
        d[i] = torch.where(take, rest, d[i])
        slot.append(match[i] | take)
        d_z = torch.where(slot[i], d[i], d_z)
    shift = (w - d_z).clamp_min(0)                      # how far z overtakes the best class
    for i in range(k):
        d[i] = torch.where(slot[i], (d_z - w).clamp_min(0), (d[i] + shift).clamp_max(CLAMP))
    rest = (rest + shift).clamp_max(CLAMP)
    moved = shift > 0      # the best class stays in slot 0: z swaps with it when it overtook
    for i in range(1, k):
        swap = moved & slot[i]
        for column in (classes, d):
            first, other = column[0], column[i]
            column[0], column[i] = torch.where(swap, other, first), torch.where(swap, first, other)
    out = torch.empty_like(state)
    for i, column in enumerate([*classes, *d, rest]):
        column = column.to(torch.uint8)
        out[:, i] = column if seen is None else torch.where(seen, column, state[:, i])
    return out


def decay(state: torch.Tensor, factor) -> torch.Tensor:
    """Evidence scaled by ``factor`` in [0, 1] (a scalar, or one per leading index), rounded."""
    k = slots_of(state)
    f = torch.as_tensor(factor, dtype=torch.float32, device=state.device)
    f = f.reshape(f.shape + (1,) * (state.dim() - f.dim()))
    out = state.clone()
    out[..., k:] = (state[..., k:].float() * f).round().to(torch.uint8)
    return out


def best(state: torch.Tensor) -> torch.Tensor:
    """Leading shape, uint8: the class with the most evidence; UNKNOWN where there is none."""
    k = slots_of(state)
    return torch.where(state[..., 2 * k] > 0, state[..., 0], UNKNOWN)


def probabilities(state: torch.Tensor, num_classes: int, unit: float) -> torch.Tensor:
    """Leading shape + (C,) float32: p(c) ∝ exp(-D(c)) with D in nats (``unit`` per deficit
    unit); uniform where there is no evidence."""
    k = slots_of(state)
    classes = state[..., :k].long()
    log_p = (-unit * state[..., 2 * k].float())[..., None].expand(*state.shape[:-1], num_classes + 1).clone()
    index = torch.where(classes == EMPTY_SLOT, num_classes, classes)     # unused slots: a spare column
    log_p.scatter_(-1, index, -unit * state[..., k:2 * k].float())
    return log_p[..., :num_classes].softmax(-1)
