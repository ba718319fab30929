"""Shared test helpers: the authors' reference data in ../shared/reference/symphonies."""
import importlib.util
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
REFERENCE_DIR = Path(os.environ.get('SSC_REFERENCE_DIR',
                                    REPO.parent / 'shared' / 'reference' / 'symphonies'))


@pytest.fixture(scope='session')
def reference_dir() -> Path:
    if not (REFERENCE_DIR / 'README.md').is_file():
        raise FileNotFoundError(
            f'reference data not found at {REFERENCE_DIR}; set SSC_REFERENCE_DIR to the folder '
            'holding MANIFEST_semantic_kitti.tsv and the fixtures')
    return REFERENCE_DIR


@pytest.fixture(scope='session')
def fill(reference_dir):
    """The reference data's deterministic weight-fill module (fill.py)."""
    spec = importlib.util.spec_from_file_location('reference_fill', reference_dir / 'fill.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {k: data[k] for k in data.files}


def weights(data: dict, prefix: str) -> dict[str, torch.Tensor]:
    """Module-local state dict stored under ``<prefix>w.`` in a fixture."""
    tag = prefix + 'w.'
    return {k[len(tag):]: torch.from_numpy(v) for k, v in data.items() if k.startswith(tag)}


def assert_close(actual, expected, atol=1e-4, rtol=1e-4, name=''):
    actual = np.asarray(actual.detach() if isinstance(actual, torch.Tensor) else actual, np.float64)
    expected = np.asarray(expected, np.float64)
    assert actual.shape == expected.shape, f'{name}: shape {actual.shape} != {expected.shape}'
    err = np.abs(actual - expected)
    bound = atol + rtol * np.abs(expected)
    worst = np.unravel_index(np.argmax(err - bound), err.shape)
    assert np.all(err <= bound), (f'{name}: max abs err {err.max():.3g} at {worst} '
                                  f'(value {actual[worst]:.6g} vs {expected[worst]:.6g})')


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope='session')
def checkpoint(tmp_path_factory) -> str:
    """The built-in ``small`` preset with random weights, as a .safetensors file (for the ROS tests)."""
    from ssc_core.checkpoint import save_checkpoint
    from ssc_core.presets import SMALL
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp('ckpt') / 'small.safetensors'
    return str(save_checkpoint(SMALL.model.build(), SMALL, path))


@pytest.fixture(scope='session')
def non_finite_checkpoint(tmp_path_factory) -> str:
    """The built-in model with every BatchNorm at variance 0 and mean 1e4: it loads (no value is
    negative or non-finite) but computes NaN for 4.8 M of its 5.2 M logits."""
    from ssc_core.checkpoint import BUILTIN_CHECKPOINT, load_model, save_checkpoint
    model, preset = load_model(BUILTIN_CHECKPOINT)
    state = model.state_dict()
    for key in [k for k in state if k.endswith('running_var')]:
        state[key].zero_()
        state[key.replace('running_var', 'running_mean')].fill_(1e4)
    path = tmp_path_factory.mktemp('ckpt') / 'non_finite.safetensors'
    return str(save_checkpoint(model, preset, path))


@pytest.fixture()
def probe():
    """An in-process ROS 2 node that records and publishes (:class:`ros_helpers.Probe`)."""
    from ros_helpers import Probe
    p = Probe()
    yield p
    p.close()


@pytest.fixture(autouse=True)
def _no_node_left_running():
    """A test that failed half-way leaves no node it started (ros_helpers.start) behind."""
    yield
    helpers = sys.modules.get('ros_helpers')
    for process in helpers.STARTED if helpers else ():
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    if helpers:
        helpers.STARTED.clear()


def pytest_collection_modifyitems(items):
    """Tests that read the authors' reference data carry the ``reference`` marker."""
    for item in items:
        if {'reference_dir', 'fill'} & set(getattr(item, 'fixturenames', ())):
            item.add_marker(pytest.mark.reference)
