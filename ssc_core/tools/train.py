"""Train Symphonies with Lightning; configuration by Hydra (ssc_core/configs/train.yaml).

    python -m ssc_core.tools.train data.data_root=/data/semantic_kitti \\
        data.depth_root=/data/depth data.label_root=/data/labels trainer.devices=4
    python -m ssc_core.tools.train preset=small data=synthetic data.data_root=outputs/synthetic

Writes <output_dir>/checkpoints/{epoch=N.ckpt, last.ckpt, best.ckpt} (atomically),
TensorBoard and CSV logs; rerunning with the same output_dir resumes exactly.
"""
import logging
import sys
from pathlib import Path

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, TQDMProgressBar
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from ..training import AtomicCheckpointIO, SSCDataModule, SSCModule

log = logging.getLogger('ssc_core.train')


def build_trainer(cfg: DictConfig, output_dir: Path) -> L.Trainer:
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    if trainer_cfg.get('sync_batchnorm') and not torch.cuda.is_available():
        trainer_cfg['sync_batchnorm'] = False  # SyncBatchNorm runs on GPUs only
    checkpoints = output_dir / 'checkpoints'
    callbacks = [
        ModelCheckpoint(dirpath=checkpoints, filename='epoch={epoch}', auto_insert_metric_name=False,
                        save_top_k=-1, save_last=True, every_n_epochs=1),
        ModelCheckpoint(dirpath=checkpoints, filename='best', monitor='val/mIoU', mode='max',
                        save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False),
        LearningRateMonitor(), TQDMProgressBar(refresh_rate=1)]
    loggers = [TensorBoardLogger(output_dir, name='tensorboard', version=''),
               CSVLogger(output_dir, name='csv', version='')]
    return L.Trainer(**trainer_cfg, callbacks=callbacks, logger=loggers,
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
    L.seed_everything(cfg.seed, workers=True)
    try:
        data = SSCDataModule(preset=cfg.preset, **OmegaConf.to_container(cfg.data, resolve=True))
        data.setup('fit')
        module = SSCModule(preset=cfg.preset, **OmegaConf.to_container(cfg.module, resolve=True))
        ckpt_path = resume_path(cfg, output_dir)
        if ckpt_path is None and cfg.init_from:
            module.load_weights(cfg.init_from)
        if ckpt_path is None and cfg.backbone_weights:
            module.load_backbone(cfg.backbone_weights)
    except (OSError, ValueError) as e:  # missing files, bad labels or checkpoints: one clear line
        sys.exit(f'train: {e}')
    trainer = build_trainer(cfg, output_dir)
    if trainer.is_global_zero:
        log.info('config:\n%s', OmegaConf.to_yaml(cfg))
        log.info('resuming from %s', ckpt_path) if ckpt_path else None
    trainer.fit(module, datamodule=data, ckpt_path=ckpt_path)


if __name__ == '__main__':
    main()
