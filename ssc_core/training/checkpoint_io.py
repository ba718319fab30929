"""Checkpoints written to a temporary file and renamed, so a crash never corrupts the last one."""
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ..files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        with atomic_path(path) as tmp:
            super().save_checkpoint(checkpoint, tmp, storage_options)
