"""The four Symphonies training losses (MonoScene's SSC losses), vectorized over classes.

Shapes: logits (B, C, X, Y, Z); target (B, X, Y, Z) int with IGNORE_LABEL (255) = ignore.
"""
import torch
import torch.nn.functional as F

from .labels import IGNORE_LABEL


def _bce_one(x: torch.Tensor) -> torch.Tensor:
    """Summed binary cross-entropy of probabilities ``x`` against 1."""
    return F.binary_cross_entropy(x, torch.ones_like(x), reduction='sum')


def ce_ssc_loss(logits, target, class_weights):
    """Class-weighted cross-entropy over non-ignored voxels (mean by weight)."""
    return F.cross_entropy(logits.float(), target.long(), weight=class_weights.float(),
                           ignore_index=IGNORE_LABEL)


def sem_scal_loss(logits, target):
    """Scene-class affinity: per present class, BCE of its precision, recall and specificity."""
    probs = F.softmax(logits.float(), dim=1)
    num_classes = probs.shape[1]
    mask = target != IGNORE_LABEL
    p = probs.movedim(1, -1)[mask].t()  # (C, N)
    onehot = F.one_hot(target[mask].long(), num_classes).t().to(p.dtype)  # (C, N)
    hits = (p * onehot).sum(1)
    p_sum, t_sum = p.sum(1), onehot.sum(1)
    neg_sum = onehot.shape[1] - t_sum
    spec = ((1 - p) * (1 - onehot)).sum(1) / neg_sum.clamp(min=1)
    present = t_sum > 0
    loss = (_bce_one(hits[present & (p_sum > 0)] / p_sum[present & (p_sum > 0)])
            + _bce_one(hits[present] / t_sum[present])
            + _bce_one(spec[present & (neg_sum > 0)]))
    return loss / present.sum()


def geo_scal_loss(logits, target):
    """Geometry affinity: BCE of occupancy precision, recall and specificity."""
    probs = F.softmax(logits.float(), dim=1)
    mask = target != IGNORE_LABEL
    empty = probs[:, 0][mask]
    occupied = 1 - empty
    truth = (target[mask] != 0).float()
    hits = (truth * occupied).sum()
    precision = hits / occupied.sum()
    recall = hits / truth.sum()
    specificity = ((1 - truth) * empty).sum() / (1 - truth).sum()
    return _bce_one(precision) + _bce_one(recall) + _bce_one(specificity)


def frustum_proportion_loss(logits, frustum_ids, frustums_class_dists):
    """KL divergence between predicted and true class proportions in each local frustum.

    frustum_ids: (B, X, Y, Z) int, the frustum of each labelled voxel or -1;
    frustums_class_dists: (B, F, C) true class counts per frustum.
    """
    probs = F.softmax(logits.float(), dim=1)
    bs, num_classes = probs.shape[:2]
    num_frustums = frustums_class_dists.shape[1]
    ids = frustum_ids.reshape(bs, 1, -1).long()
    seen = (ids >= 0).to(probs.dtype)
    cum_prob = probs.new_zeros(bs, num_classes, num_frustums + 1)
    cum_prob.scatter_add_(2, (ids + 1).clamp(min=0).expand(-1, num_classes, -1),
                          probs.flatten(2) * seen)
    cum_prob = cum_prob[..., 1:].sum(0).t()  # (F, C)
    counts = frustums_class_dists.to(probs.dtype).sum(0)  # (F, C)
    total_prob, total_cnt = cum_prob.sum(1, keepdim=True), counts.sum(1, keepdim=True)
    valid = ((total_prob > 0) & (total_cnt > 0)).squeeze(1)
    target = counts / total_cnt.clamp(min=1e-30)
    pred = cum_prob / total_prob.clamp(min=1e-30)
    kl = torch.where(target > 0, target * (torch.log(target.clamp(min=1e-30)) -
                                           torch.log(pred.clamp(min=1e-30))), 0).sum(1)
    return kl[valid].sum() / valid.sum()
