"""The random-number generators' states as plain values, to store in a checkpoint and restore.

Only Python ints, lists and tensors, so any checkpoint reader (``weights_only`` loading, our
restricted unpickler) takes them.
"""
import random

import numpy as np
import torch


def rng_states() -> dict:
    """The states of Python's, NumPy's and PyTorch's global generators (and CUDA's, if any)."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    states = {'python': random.getstate(), 'numpy': [name, keys.tolist(), pos, has_gauss, gauss],
              'torch': torch.get_rng_state()}
    if torch.cuda.is_available():
        states['cuda'] = torch.cuda.get_rng_state_all()
    return states


def set_rng_states(states: dict) -> None:
    """Restore what :func:`rng_states` returned."""
    version, internal, gauss = states['python']
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = states['numpy']
    np.random.set_state((name, np.array(keys, np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(states['torch'])
    if 'cuda' in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states['cuda'])
