"""Semantic scene completion metrics: completion IoU/precision/recall and per-class IoU.

Accumulated as one confusion matrix, so batches and processes merge by summation.
"""
import torch
import torch.distributed as dist

from .labels import IGNORE_LABEL


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_LABEL) -> torch.Tensor:
    """pred, target (B, X, Y, Z) labels → (C, C) int64 counts [target, pred] over non-ignored voxels."""
    valid = target != ignore_index
    t = target[valid].long()
    p = pred[valid].long()
    if (t >= num_classes).any() or (p >= num_classes).any() or (t < 0).any() or (p < 0).any():
        raise ValueError(f'labels outside 0..{num_classes - 1} (and {ignore_index} = ignore): '
                         f'target max {int(t.max())}, pred max {int(p.max())}')
    return torch.bincount(t * num_classes + p, minlength=num_classes ** 2).view(num_classes, num_classes)


def scores(confusion: torch.Tensor) -> dict:
    """Metric table from a (C, C) confusion matrix (the authors' definitions).

    Completion (empty = class 0 vs the rest): Precision, Recall, IoU. Semantics: iou_per_class
    tp / (tp + fp + fn + 1e-6) and mIoU over classes 1..C-1.
    """
    confusion = confusion.double()
    tp_sc = confusion[1:, 1:].sum()
    fp_sc = confusion[0, 1:].sum()
    fn_sc = confusion[1:, 0].sum()
    if tp_sc > 0:
        precision = float(tp_sc / (tp_sc + fp_sc))
        recall = float(tp_sc / (tp_sc + fn_sc))
        iou = float(tp_sc / (tp_sc + fp_sc + fn_sc))
    else:
        precision = recall = iou = 0.0
    tps = confusion.diagonal()
    fps = confusion.sum(0) - tps
    fns = confusion.sum(1) - tps
    ious = tps / (tps + fps + fns + 1e-6)
    return {'Precision': precision, 'Recall': recall, 'IoU': iou,
            'iou_per_class': ious.tolist(), 'mIoU': float(ious[1:].mean())}


class SSCMetrics:
    """Accumulates predictions over batches; ``compute()`` gives :func:`scores`."""

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_LABEL):
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """pred: labels (B, X, Y, Z) or logits (B, C, X, Y, Z); target (B, X, Y, Z)."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        if pred.shape != target.shape:
            raise ValueError(f'prediction shape {tuple(pred.shape)} != target shape {tuple(target.shape)}')
        self.confusion += confusion_matrix(pred, target, self.num_classes,
                                           self.ignore_index).to(self.confusion.device)

    def reset(self) -> None:
        self.confusion.zero_()

    def gathered(self) -> torch.Tensor:
        """The confusion matrix summed over all processes of the default group (this process's
        own without one); the local counts are left as they are."""
        if not (dist.is_available() and dist.is_initialized()):
            return self.confusion.clone()
        device = 'cuda' if dist.get_backend() == 'nccl' else 'cpu'
        total = self.confusion.to(device)
        dist.all_reduce(total)
        return total.cpu()

    def compute(self) -> dict:
        """Scores over everything seen, in every process."""
        return scores(self.gathered())
