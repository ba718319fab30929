"""Lightning data module over the dataset readers."""
import lightning as L
import torch

from ..data.dataset import SSCDataset
from ..data.readers import READERS
from ..presets import get_preset


class SSCDataModule(L.LightningDataModule):
    """Train/val/test loaders of one dataset.

    Args:
        dataset: 'semantic_kitti' or 'kitti_360' (the on-disk layout).
        preset: network/geometry preset name. data_root, depth_root, label_root: folders.
        splits: optional {split: [sequences]} overriding the dataset's standard splits.
    """

    def __init__(self, dataset: str, preset: str, data_root: str, depth_root: str, label_root: str,
                 batch_size: int = 1, num_workers: int = 4, frustum_size: int = 8,
                 flip: bool = True, splits: dict | None = None):
        super().__init__()
        if dataset not in READERS:
            raise ValueError(f'data.dataset: expected one of {list(READERS)}, got {dataset!r}')
        self.reader = READERS[dataset]
        self.preset = get_preset(preset)
        self.roots = dict(data_root=data_root, depth_root=depth_root, label_root=label_root)
        self.batch_size, self.num_workers = batch_size, num_workers
        self.frustum_size, self.flip = frustum_size, flip
        self.splits = dict(splits or {})

    def dataset(self, split: str, with_targets: bool = True) -> SSCDataset:
        roots = dict(self.roots) if with_targets else {**self.roots, 'label_root': None}
        frames = self.reader(roots['data_root'], split, roots['depth_root'], roots['label_root'],
                             sequences=self.splits.get(split))
        return SSCDataset(frames, self.preset, self.frustum_size, flip=self.flip and split == 'train')

    def setup(self, stage: str) -> None:
        """List and check the frames of the stage's splits (errors name the missing paths)."""
        wanted = {'fit': ('train', 'val'), 'validate': ('val',), 'test': ('test',)}.get(stage, ())
        self.datasets = getattr(self, 'datasets', {})
        for split in wanted:
            if split not in self.datasets:
                self.datasets[split] = self.dataset(split, with_targets=split != 'test')

    def _loader(self, split, shuffle):
        return torch.utils.data.DataLoader(
            self.datasets[split], batch_size=self.batch_size, shuffle=shuffle,
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0)

    def train_dataloader(self):
        return self._loader('train', shuffle=True)

    def val_dataloader(self):
        return self._loader('val', shuffle=False)

    def test_dataloader(self):
        return self._loader('test', shuffle=False)
