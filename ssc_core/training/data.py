"""Lightning data module over the dataset readers."""
import math

import lightning as L
import numpy as np
import torch

from ..data.dataset import SSCDataset
from ..data.photometric import Photometric
from ..data.readers import READERS
from ..presets import get_preset


class EpochSampler(torch.utils.data.Sampler):
    """The training order, flips and photometric seeds as functions of (seed, epoch) alone, so a
    resumed run draws exactly what an uninterrupted one draws. Yields ``(index, flip, photometric
    seed)`` keys of this process's share (every ``world_size``-th of the shuffled order from
    ``rank``, padded like DistributedSampler)."""

    def __init__(self, size: int, seed: int, flip: bool, epoch: int = 0, rank: int = 0, world_size: int = 1):
        self.size, self.seed, self.flip = size, seed, flip
        self.epoch, self.rank, self.world_size = epoch, rank, world_size

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self):
        return math.ceil(self.size / self.world_size)

    def __iter__(self):
        rng = np.random.default_rng([self.seed, self.epoch])
        order = rng.permutation(self.size)
        flips = rng.random(self.size) < 0.5 if self.flip else np.zeros(self.size, bool)
        seeds = rng.integers(0, 2**31, self.size)
        share = np.resize(order, len(self) * self.world_size)[self.rank::self.world_size]
        return iter([(int(i), bool(flips[i]), int(seeds[i])) for i in share])


class SSCDataModule(L.LightningDataModule):
    """Train/val/test loaders of one dataset.

    Args:
        dataset: 'semantic_kitti' or 'kitti_360' (the on-disk layout).
        preset: network/geometry preset name. data_root, depth_root, label_root: folders.
        flip: the authors' training augmentation (horizontal flip of image, depth and target with
            probability 0.5). seed: of the training order and augmentation (:class:`EpochSampler`).
        splits: optional {split: [sequences]} overriding the dataset's standard splits.
        photometric: camera-like image changes of training samples, as keyword arguments of
            :class:`~ssc_core.data.photometric.Photometric` (None: off, the authors' recipe).
    """

    def __init__(self, dataset: str, preset: str, data_root: str, depth_root: str, label_root: str,
                 batch_size: int = 1, num_workers: int = 4, frustum_size: int = 8,
                 flip: bool = True, splits: dict | None = None, seed: int = 0,
                 photometric: dict | None = None):
        super().__init__()
        if dataset not in READERS:
            raise ValueError(f'data.dataset: expected one of {list(READERS)}, got {dataset!r}')
        self.reader = READERS[dataset]
        self.preset = get_preset(preset)
        self.roots = dict(data_root=data_root, depth_root=depth_root, label_root=label_root)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.frustum_size, self.flip, self.seed = frustum_size, flip, seed
        self.splits = dict(splits or {})
        fields = list(Photometric.__annotations__)
        if photometric is not None and not isinstance(photometric, dict):
            raise ValueError(f'photometric: expected null or a mapping of {fields}, got {photometric!r}')
        try:
            self.photometric = Photometric(**photometric) if photometric is not None else None
        except TypeError as e:
            raise ValueError(f'photometric: {e}; expected keys {fields}') from None

    def dataset(self, split: str, with_targets: bool = True) -> SSCDataset:
        roots = dict(self.roots) if with_targets else {**self.roots, 'label_root': None}
        frames = self.reader(roots['data_root'], split, roots['depth_root'], roots['label_root'],
                             sequences=self.splits.get(split))
        photometric = self.photometric if split == 'train' else None
        return SSCDataset(frames, self.preset, self.frustum_size, photometric=photometric)

    def setup(self, stage: str) -> None:
        """List and check the frames of the stage's splits (errors name the missing paths)."""
        wanted = {'fit': ('train', 'val'), 'validate': ('val',), 'test': ('test',)}.get(stage, ())
        self.datasets = getattr(self, 'datasets', {})
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self.dataset(split, with_targets=split != 'test')

    def _process_share(self) -> tuple[int, int, int]:
        """(epoch, rank, world size) of the running trainer; (0, 0, 1) without one."""
        trainer = self.trainer
        if trainer is None:
            return 0, 0, 1
        return trainer.current_epoch, trainer.global_rank, trainer.world_size

    def _loader(self, split):
        dataset = self.datasets[split]
        epoch, rank, world_size = self._process_share()
        if split == 'train':
            sampler = EpochSampler(len(dataset), self.seed, self.flip, epoch, rank, world_size)
        elif world_size > 1:
            sampler = torch.utils.data.DistributedSampler(dataset, world_size, rank, shuffle=False)
        else:
            sampler = None
        # The loaders' own generator: creating their iterators leaves the global RNG (dropout) alone.
        return torch.utils.data.DataLoader(
            dataset, batch_size=self.batch_size, sampler=sampler, num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0, generator=torch.Generator().manual_seed(self.seed))

    def train_dataloader(self):
        return self._loader('train')

    def val_dataloader(self):
        return self._loader('val')

    def test_dataloader(self):
        return self._loader('test')
