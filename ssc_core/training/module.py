"""The Lightning module: Symphonies, its four losses, the authors' optimizer and schedule."""
import lightning as L
import torch

from ..checkpoint import check_state_dict, read_state_dict
from ..frame_inputs import NETWORK_INPUTS
from ..labels import class_weights
from ..losses import ce_ssc_loss, frustum_proportion_loss, geo_scal_loss, sem_scal_loss
from ..metrics import SSCMetrics
from ..presets import Preset, get_preset
from .encoder_weights import EncoderWeightsReport, load_encoder_weights
from .random_state import rng_states, set_rng_states


class SSCModule(L.LightningModule):
    """Trains a preset's network.

    Args:
        preset: preset name. lr, weight_decay, eps: AdamW. encoder_lr_mult: learning-rate factor
        of the image encoder trunk (``encoder.model``). milestones, gamma: MultiStepLR per epoch.
        criterions: subset of ce_ssc, sem_scal, geo_scal, frustum.
    """

    def __init__(self, preset: str = 'semantic_kitti', lr: float = 2e-4, weight_decay: float = 1e-4,
                 eps: float = 1e-3, encoder_lr_mult: float = 0.1, milestones=(25,), gamma: float = 0.1,
                 criterions=('ce_ssc', 'sem_scal', 'geo_scal', 'frustum')):
        super().__init__()
        self.save_hyperparameters()
        self.preset: Preset = get_preset(preset)
        self.model = self.preset.model.build()
        num_classes = self.preset.model.num_classes
        freq = self.preset.class_frequencies  # None: equal weights
        weights = class_weights(freq) if freq is not None else torch.ones(num_classes).numpy()
        self.register_buffer('class_weights', torch.from_numpy(weights), persistent=False)
        self.criterions = tuple(criterions)
        self.val_metrics = SSCMetrics(num_classes)

    def forward(self, batch):
        return self.model(**{k: batch[k] for k in NETWORK_INPUTS})

    def criterion(self, name: str, logits, batch) -> torch.Tensor:
        if name == 'ce_ssc':
            return ce_ssc_loss(logits, batch['target'], self.class_weights)
        if name == 'sem_scal':
            return sem_scal_loss(logits, batch['target'])
        if name == 'geo_scal':
            return geo_scal_loss(logits, batch['target'])
        if name == 'frustum':
            return frustum_proportion_loss(logits, batch['frustum_ids'], batch['frustums_class_dists'])
        raise ValueError(f'unknown criterion {name!r}; expected ce_ssc, sem_scal, geo_scal, frustum')

    def losses(self, outputs, batch) -> dict[str, torch.Tensor]:
        """Each criterion on each layer's logits, weighted 0.5 except the last layer (1.0)."""
        losses = {}
        for i, logits in enumerate(outputs):
            scale = 1.0 if i == len(outputs) - 1 else 0.5
            for name in self.criterions:
                losses[f'loss_{name}_{i}'] = self.criterion(name, logits, batch) * scale
        return losses

    def training_step(self, batch, batch_idx):
        with torch.autocast(self.device.type, enabled=False):
            losses = self.losses([o.float() for o in self(batch)], batch)
        total = sum(losses.values())
        self.log_dict({f'train/{k}': v for k, v in losses.items()}, batch_size=len(batch['img']))
        self.log('train/loss', total, prog_bar=True, batch_size=len(batch['img']))
        return total

    def validation_step(self, batch, batch_idx):
        outputs = self(batch)
        losses = self.losses(outputs[-1:], batch)
        self.log('val/loss', sum(losses.values()), sync_dist=True, batch_size=len(batch['img']))
        self.val_metrics.update(outputs[-1].argmax(1).cpu(), batch['target'].cpu())

    def on_validation_epoch_end(self):
        scores = self.val_metrics.compute()
        self.val_metrics.reset()
        # Every process holds the same all-reduced scores.
        self.log_dict({f'val/{k}': scores[k] for k in ('mIoU', 'IoU', 'Precision', 'Recall')})
        self.last_val_scores = scores
        fitting = self.trainer.state.fn == 'fit' and not self.trainer.sanity_checking
        if self.trainer.is_global_zero and fitting:  # evaluate prints its own table
            print(format_scores(scores, self.preset.class_names, f'epoch {self.current_epoch}'))

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint['rng_states'] = rng_states()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self._resumed_rng_states = checkpoint.get('rng_states')

    def on_train_start(self) -> None:
        """On resume, the generators continue from where the checkpoint left them (dropout draws
        as in an uninterrupted run; the loaders draw from their own generators)."""
        states = getattr(self, '_resumed_rng_states', None)
        if states is not None:
            set_rng_states(states)
            self._resumed_rng_states = None

    def configure_optimizers(self):
        encoder, rest = [], []
        for name, p in self.model.named_parameters():
            (encoder if name.startswith('encoder.model.') else rest).append(p)
        hp = self.hparams
        optimizer = torch.optim.AdamW(
            [{'params': rest}, {'params': encoder, 'lr': hp.lr * hp.encoder_lr_mult}],
            lr=hp.lr, weight_decay=hp.weight_decay, eps=hp.eps)
        scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, list(hp.milestones), hp.gamma)
        return {'optimizer': optimizer, 'lr_scheduler': scheduler}

    def load_weights(self, path) -> None:
        """Initialize the network from a checkpoint (ours, the authors' or a bare state dict)."""
        state, _ = read_state_dict(path)
        self.model.load_state_dict(check_state_dict(self.model, state, str(path)))

    def load_backbone(self, path) -> None:
        """Initialize the image backbone from a timm/torchvision state-dict file (``fc`` ignored)."""
        state, _ = read_state_dict(path)
        state = {k: v for k, v in state.items() if not k.startswith('fc.')}
        backbone = self.model.encoder.model.backbone
        expected = backbone.state_dict()
        problems = [k for k in expected if k not in state] + [k for k in state if k not in expected]
        problems += [k for k in expected if k in state and state[k].shape != expected[k].shape]
        if problems:
            raise ValueError(f'{path}: backbone weights do not fit {self.preset.model.backbone} '
                             f'(missing, unexpected or mis-shaped: {", ".join(problems[:10])})')
        backbone.load_state_dict(state)

    def load_encoder(self, path) -> EncoderWeightsReport:
        """Initialize the image encoder's backbone and pixel decoder from MaskDINO's checkpoint
        (detectron2 or MMDetection layout, see encoder_weights)."""
        return load_encoder_weights(self.model.encoder, path)


def format_scores(scores: dict, class_names, title: str = '') -> str:
    """The metric table: completion IoU/precision/recall, then IoU per class and mIoU."""
    lines = [f'{title}  IoU {scores["IoU"] * 100:.2f}  Precision {scores["Precision"] * 100:.2f}  '
             f'Recall {scores["Recall"] * 100:.2f}  mIoU {scores["mIoU"] * 100:.2f}']
    for name, iou in zip(class_names[1:], scores['iou_per_class'][1:], strict=True):
        lines.append(f'  {name:<14} {iou * 100:6.2f}')
    return '\n'.join(lines)
