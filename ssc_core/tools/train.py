"""Train Symphonies with Lightning; configuration by Hydra (ssc_core/configs/train.yaml).

    python -m ssc_core.tools.train data.data_root=/data/semantic_kitti \\
        data.depth_root=/data/depth data.label_root=/data/labels trainer.devices=4
    python -m ssc_core.tools.train preset=small data=synthetic data.data_root=outputs/synthetic

Writes <output_dir>/checkpoints/{best.ckpt, last.ckpt} (save_top_k: more or fewer; atomically),
TensorBoard and CSV logs; rerunning with the same output_dir resumes exactly.
"""
import inspect
import logging
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import MissingMandatoryValue

from ..training import AtomicCheckpointIO, SSCDataModule, SSCModule

log = logging.getLogger('ssc_core.train')


def checked_arguments(cls, cfg: DictConfig, section: str) -> dict:
    """``cfg.<section>`` as keyword arguments of ``cls``, every required value present and every
    value of the type ``cls`` declares (float, int, bool); ValueError naming the key otherwise."""
    try:
        values = OmegaConf.to_container(cfg[section], resolve=True, throw_on_missing=True)
    except MissingMandatoryValue as e:
        raise ValueError(f'{e.full_key}: required, not set (add {e.full_key}=...)') from None
    params = inspect.signature(cls).parameters
    for key, value in values.items():
        if key not in params:
            raise ValueError(f'{section}.{key}: unknown; expected one of {", ".join(params)}')
        wanted = params[key].annotation
        if wanted is float and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise ValueError(f'{section}.{key}: expected a number, got {value!r}')
        if wanted is int and (isinstance(value, bool) or not isinstance(value, int)):
            raise ValueError(f'{section}.{key}: expected an integer, got {value!r}')
        if wanted is bool and not isinstance(value, bool):
            raise ValueError(f'{section}.{key}: expected true or false, got {value!r}')
    return values


class EpochCheckpoints(ModelCheckpoint):
    """The epoch=N.ckpt files kept beside best.ckpt (its own class: its own state key)."""


def checkpoint_callbacks(folder: Path, save_top_k: int) -> list[ModelCheckpoint]:
    """last.ckpt always; best.ckpt (by val mIoU) unless ``save_top_k`` is 0; with ``save_top_k``
    k > 1 also the k best epochs as epoch=N.ckpt, with -1 every epoch's."""
    if not isinstance(save_top_k, int) or isinstance(save_top_k, bool) or save_top_k < -1:
        raise ValueError(f'save_top_k: expected -1 (every epoch), 0 (last only), 1 (best + last) or '
                         f'k > 1, got {save_top_k!r}')
    monitor = dict(monitor='val/mIoU', mode='max', auto_insert_metric_name=False)
    callbacks = []
    if save_top_k == -1 or save_top_k > 1:
        callbacks.append(EpochCheckpoints(dirpath=folder, filename='epoch={epoch}', save_top_k=save_top_k,
                                          **monitor))
    # last.ckpt is written last: when it exists, the epoch's other files do too.
    callbacks.append(ModelCheckpoint(dirpath=folder, filename='best', save_top_k=0 if save_top_k == 0 else 1,
                                     save_last=True, enable_version_counter=False, **monitor))
    return callbacks


def build_trainer(cfg: DictConfig, output_dir: Path) -> L.Trainer:
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_cfg.get('sync_batchnorm') and not torch.cuda.is_available():
        trainer_cfg['sync_batchnorm'] = False  # SyncBatchNorm runs on GPUs only
    callbacks = [*checkpoint_callbacks(output_dir / 'checkpoints', cfg.save_top_k),
                 LearningRateMonitor(), TQDMProgressBar(refresh_rate=1)]
    loggers = [TensorBoardLogger(output_dir, name='tensorboard', version=''),
               CSVLogger(output_dir, name='csv', version='')]
    # The data module shards the loaders itself (EpochSampler keeps order and flips resumable).
    return L.Trainer(**trainer_cfg, callbacks=callbacks, logger=loggers, use_distributed_sampler=False,
                     plugins=[AtomicCheckpointIO()], default_root_dir=output_dir)


def resume_path(cfg: DictConfig, output_dir: Path):
    if cfg.resume == 'never':
        return None
    if cfg.resume == 'auto':
        last = output_dir / 'checkpoints' / 'last.ckpt'
        return str(last) if last.is_file() else None
    if not Path(cfg.resume).is_file():
        raise FileNotFoundError(f'resume: {cfg.resume} is not a file')
    return cfg.resume


@hydra.main(config_path='../configs', config_name='train', version_base=None)
def main(cfg: DictConfig):
    output_dir = Path(cfg.output_dir)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    try:
        data_args = checked_arguments(SSCDataModule, cfg, 'data')
        data = SSCDataModule(preset=cfg.preset, seed=cfg.seed, **data_args)
        module = SSCModule(preset=cfg.preset, **checked_arguments(SSCModule, cfg, 'module'))
        data.setup('fit')
        ckpt_path = resume_path(cfg, output_dir)
        if ckpt_path is None and cfg.init_from:
            module.load_weights(cfg.init_from)
        if ckpt_path is None and cfg.backbone_weights:
            module.load_backbone(cfg.backbone_weights)
        if ckpt_path is None and cfg.encoder_weights:
            print(module.load_encoder(cfg.encoder_weights).summary(), flush=True)
        trainer = build_trainer(cfg, output_dir)
    except (OSError, ValueError, TypeError) as e:  # bad values, missing files, labels, checkpoints: one line
        sys.exit(f'train: {e}')
    if trainer.is_global_zero:
        log.info('config:\n%s', OmegaConf.to_yaml(cfg))
        log.info('resuming from %s', ckpt_path) if ckpt_path else None
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)


if __name__ == '__main__':
    main()
