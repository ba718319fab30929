"""Checkpoints written to a temporary file and renamed, so a crash never corrupts the last one."""
import os
from pathlib import Path

from lightning.pytorch.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):

    def save_checkpoint(self, checkpoint, path, storage_options=None):
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f'.{path.name}.tmp')
        super().save_checkpoint(checkpoint, tmp, storage_options)
        os.replace(tmp, path)
