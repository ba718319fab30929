"""Training with Lightning: the module, the data module and atomic checkpoints."""
from .checkpoint_io import AtomicCheckpointIO
from .data import SSCDataModule
from .module import SSCModule

__all__ = ['AtomicCheckpointIO', 'SSCDataModule', 'SSCModule']
