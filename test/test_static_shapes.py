"""A forward of fixed shapes: the voxel selections at given sizes, no host sync or host data in
the forward, one graph for torch.compile, one copy of the inputs to the device, and the CUDA-graph
backend's bookkeeping (run on the CPU; the CUDA graphs themselves in test_cuda.py)."""
import logging

import numpy as np
import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from ssc_core.backends import CudaGraphBackend, TorchBackend, cuda_graph_backend
from ssc_core.backends.static_shapes import fixed_sizes, proposal_step
from ssc_core.model.decoder import SelectionSizes, select_voxels, stable_partition
from ssc_core.predictor import Predictor, batch_to_device

from small_model import SMALL_PRESET, small_frame

# What a forward replayed as a CUDA graph may not do: read a value on the host (item, int(),
# nonzero's size), make a tensor from host data (torch.tensor), wait for an error check.
HOST_SYNCS = ('aten._local_scalar_dense', 'aten.nonzero', 'aten.lift_fresh', 'aten.masked_select',
              'aten._linalg_check_errors', 'aten.unique', 'aten._unique')


class OpLog(TorchDispatchMode):
    """The ATen ops that run inside the block."""

    def __init__(self):
        super().__init__()
        self.ops = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops.append(str(func))
        return func(*args, **(kwargs or {}))

    def syncs(self) -> set[str]:
        return {op for op in self.ops if op.startswith(HOST_SYNCS)}


@pytest.fixture(scope='module')
def model():
    torch.manual_seed(0)
    return SMALL_PRESET.model.build().eval()


@pytest.fixture(scope='module')
def predictor(model):
    return Predictor(TorchBackend(model), SMALL_PRESET)


def other_pose(seed):
    """A frame seen from another pose: other field-of-view and proposal counts."""
    image, depth, K, pose = small_frame(seed)
    pose = pose.copy()
    pose[:3, 3] += (0.5, 0.0, 3.0)
    return image, depth, K, pose


def test_stable_partition_is_a_stable_argsort():
    torch.manual_seed(0)
    masks = torch.rand(5, 300) < torch.tensor([[0.0], [1.0], [0.3], [0.9], [0.01]])
    order = stable_partition(masks)
    expected = torch.argsort((~masks).to(torch.uint8), dim=1, stable=True)
    assert torch.equal(order, expected)


def test_select_voxels_pads_with_other_voxels_and_keeps_the_first_on_overflow():
    mask = torch.tensor([[False, True, False, True, True, False],
                         [True, False, False, False, False, False]])
    exact = select_voxels(mask)
    assert exact.index.tolist() == [[1, 3, 4], [0, 1, 2]]
    assert exact.valid.tolist() == [[True] * 3, [True, False, False]]
    assert select_voxels(mask[:1]).valid is None  # one sample, nothing padded
    padded = select_voxels(mask, 5)
    assert padded.index.tolist() == [[1, 3, 4, 0, 2], [0, 1, 2, 3, 4]]
    assert padded.valid.sum(1).tolist() == [3, 1]
    assert select_voxels(mask, 99).index.shape == select_voxels(mask, 99).valid.shape == (2, 6)  # <= N
    assert select_voxels(mask, 2).index.tolist() == [[1, 3], [0, 1]]
    empty = select_voxels(torch.zeros(1, 6, dtype=torch.bool), 2)
    assert empty.index.tolist() == [[0, 1]] and not empty.valid.any()


def test_proposal_steps():
    assert proposal_step(0, 10**6) == 256
    steps = [proposal_step(c, 10**6) for c in range(0, 200_000, 97)]
    for count, step in zip(range(0, 200_000, 97), steps, strict=True):
        assert count + count // 64 + 8 <= step <= max(256, 1.19 * (count + count // 64 + 8) + 64)
    assert len(set(steps)) < 40  # few sizes, each compiled or captured once
    assert proposal_step(5000, 1024) == 1024


def test_fixed_sizes_give_the_eager_result(model, predictor):
    """Padded selections (rows computed, then dropped) change no voxel's result: one frame, a
    batch of two calibrations, a frame without depth (no proposals at all)."""
    image, depth, K, pose = small_frame(4)
    frames = [([image], [depth], [K], [pose]),
              tuple(list(x) for x in zip(small_frame(4), other_pose(2), strict=True)),
              ([image], [np.full_like(depth, np.nan)], [K], [pose])]
    for frame in frames:
        inputs = predictor.prepare(*frame)
        counts = model.selection_counts(**inputs)
        with torch.no_grad():
            reference = model(**inputs)[-1]
            for sizes in (fixed_sizes(model, inputs), SelectionSizes(model.decoder.num_voxels,
                                                                     model.decoder.num_voxels)):
                assert (counts <= torch.tensor(sizes)).all()
                fixed = model(**inputs, sizes=sizes)[-1]
                torch.testing.assert_close(fixed, reference, atol=1e-5, rtol=1e-5)
                assert (fixed.argmax(1) == reference.argmax(1)).float().mean() >= 0.9999
    assert counts[0, 1] == 0 and counts[0, 0] > 0


def test_forward_with_fixed_sizes_has_no_host_sync(model, predictor):
    """The forward (the authors' class head, as on a GPU) reads nothing back to the host and
    makes no tensor from host data once its constants exist: what a CUDA graph needs."""
    inputs = predictor.prepare(*[[x] for x in small_frame(4)])
    sizes = fixed_sizes(model, inputs)
    with torch.no_grad():
        model(**inputs, sizes=sizes)  # a first run makes the constants (as a capture's warm-up)
        with OpLog() as fixed:
            model(**inputs, sizes=sizes)
        with OpLog() as sized_by_data:
            model(**inputs)
    assert len(fixed.ops) > 1000 and fixed.syncs() == set(), fixed.syncs()
    assert 'aten._local_scalar_dense.default' in sized_by_data.syncs()  # the check sees them


def test_whole_forward_compiles_as_one_graph(model, predictor):
    """``torch.compile(fullgraph=True, dynamic=False)`` takes the whole forward with fixed sizes:
    it raises at any graph break. The backend is ``aot_eager``: graph breaks are Dynamo's,
    and AOT tracing with fake tensors (which refuses data-dependent shapes) runs as it does
    for Inductor, in seconds instead of minutes (Inductor: test_torch_compile_backend)."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    inputs = predictor.prepare(*[[x] for x in small_frame(4)])
    sizes = fixed_sizes(model, inputs)
    graphs_before = counters['stats']['unique_graphs']  # the counters live as long as the process
    breaks_before = sum(counters['graph_break'].values())
    compiled = torch.compile(model, fullgraph=True, dynamic=False, backend='aot_eager')
    with torch.no_grad():
        out = compiled(**inputs, sizes=sizes)[-1]
        reference = model(**inputs)[-1]
    assert counters['stats']['unique_graphs'] == graphs_before + 1, 'not one graph'
    assert sum(counters['graph_break'].values()) == breaks_before
    torch.testing.assert_close(out, reference, atol=1e-5, rtol=1e-5)


def test_batch_moves_to_the_device_in_one_copy():
    rng = np.random.default_rng(0)
    frames = [{'a': rng.random((3, 5), dtype=np.float32), 'b': rng.integers(0, 9, (7, 2)),
               'c': rng.random(11) > 0.5} for _ in range(2)]
    frames[1]['a'] = np.asfortranarray(frames[1]['a'])  # any memory layout
    moved = batch_to_device(frames, ('a', 'b', 'c'), 'cpu')
    for key, value in moved.items():
        expected = np.stack([f[key] for f in frames])
        assert value.dtype == torch.from_numpy(expected).dtype and value.is_contiguous()
        np.testing.assert_array_equal(value.numpy(), expected)
        assert value.data_ptr() % 64 == 0
    assert len({v.untyped_storage().data_ptr() for v in moved.values()}) == 1
    frames[1]['b'] = frames[1]['b'][:6]
    with pytest.raises(ValueError, match=r'b: frame 1 has shape \(6, 2\), frame 0 \(7, 2\)'):
        batch_to_device(frames, ('a', 'b', 'c'), 'cpu')


def test_cuda_graph_backend_bookkeeping_on_the_cpu(model, predictor):
    """On the CPU the CUDA-graph backend runs its bookkeeping with eager forwards: the same
    results, one capture per calibration and proposal step, the least recently used dropped,
    returned logits its caller's own."""
    graphs = CudaGraphBackend(model, 'cpu', max_graphs=2)
    runner = Predictor(graphs, SMALL_PRESET)
    for frame in (small_frame(1), small_frame(1), other_pose(1), small_frame(1)):
        inputs = predictor.prepare(*[[x] for x in frame])
        labels, logits = graphs.run(inputs)
        reference_labels, reference = predictor.backend.run(inputs)
        torch.testing.assert_close(logits, reference, atol=1e-5, rtol=1e-5)
        assert (labels == reference_labels).mean() >= 0.9999
    assert graphs.captures == 2 and len(graphs.graphs) == 2
    kept = logits.clone()
    image, depth, K, pose = small_frame(1)
    flipped = predictor.prepare([np.ascontiguousarray(image[:, ::-1])], [depth], [K], [pose])
    assert not torch.equal(graphs.run(flipped)[1], kept)  # the last graph, replayed on new data
    assert graphs.captures == 2 and torch.equal(logits, kept)  # the caller's copy stays
    batch = runner.predict_batch(*[list(x) for x in zip(small_frame(1), other_pose(1), strict=True)])
    assert graphs.captures == 3 and len(graphs.graphs) == 2  # a batch is a shape of its own
    np.testing.assert_array_equal(batch[1].labels, runner.predict(*other_pose(1)).labels)
    assert 'fixed shapes' in graphs.describe()


def test_cuda_graph_backend_runs_eager_where_capture_fails(model, predictor, monkeypatch, caplog):
    def refuse(*args, **kwargs):
        raise RuntimeError('operation not permitted when stream is capturing\nmore')
    monkeypatch.setattr(cuda_graph_backend, 'CapturedForward', refuse)
    graphs = CudaGraphBackend(model, 'cpu')
    inputs = predictor.prepare(*[[x] for x in small_frame(1)])
    with caplog.at_level(logging.WARNING, 'ssc_core.cuda_graph'):
        labels, _ = graphs.run(inputs)
        graphs.run(inputs)
    assert [r.getMessage() for r in caplog.records] == [
        'CUDA graph capture failed, running eager instead: operation not permitted when stream is capturing']
    np.testing.assert_array_equal(labels, predictor.backend.run(inputs)[0])
    assert 'capture failed' in graphs.describe()


def test_predictor_builds_the_cuda_graph_backend(tmp_path):
    from ssc_core.backends import BACKENDS
    from ssc_core.checkpoint import BUILTIN_CHECKPOINT
    assert 'torch_cudagraph' in BACKENDS
    predictor = Predictor.from_checkpoint(BUILTIN_CHECKPOINT, backend='torch_cudagraph', device='cpu')
    assert isinstance(predictor.backend, CudaGraphBackend)
