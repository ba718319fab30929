"""The inference-time rewrites compute the authors' function: sub-pixel class head, label
argmax, host-memory reuse, torch.compile."""
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from ssc_core.backends import TorchBackend
from ssc_core.backends.torch_backend import class_labels
from ssc_core.checkpoint import BUILTIN_CHECKPOINT
from ssc_core.data.sample import sample_frame
from ssc_core.model.decoder import ClassHead, Upsample
from ssc_core.model.subpixel_head import phase_convolutions
from ssc_core.predictor import Predictor

from small_model import SMALL_PRESET, small_frame


def random_head(channels: int, classes: int, z_up: bool) -> ClassHead:
    first = (nn.Sequential(nn.ConvTranspose3d(channels, channels, 3, stride=(1, 1, 2), padding=1,
                                              output_padding=(0, 0, 1)),
                           nn.BatchNorm3d(channels), nn.ReLU()) if z_up else nn.Identity())
    head = ClassHead(first, Upsample(channels, channels), nn.Conv3d(channels, classes, 1))
    for m in head.modules():
        if isinstance(m, nn.BatchNorm3d):  # statistics far from the identity
            m.running_mean.normal_()
            m.running_var.uniform_(0.5, 2.0)
            m.weight.data.normal_()
            m.bias.data.normal_()
    return head.eval()


@pytest.mark.parametrize('z_up, slab_bytes', [(True, None), (False, None), (True, 1)])
def test_subpixel_head_equals_the_authors_layers(z_up, slab_bytes, monkeypatch):
    """slab_bytes=1: one X slice of the input at a time (full-size volumes are taken in slabs)."""
    if slab_bytes:
        monkeypatch.setattr('ssc_core.model.subpixel_head.CHUNK_BYTES', slab_bytes)
    torch.manual_seed(0)
    head = random_head(16, 5, z_up)
    x = torch.randn(2, 16, 6, 7, 3)
    with torch.no_grad():
        reference = head(x)
        head.subpixel = True
        fast = head(x)
        monkeypatch.undo()
        assert torch.equal(fast, head(x))  # slabs change nothing
    assert fast.shape == reference.shape == (2, 5, 12, 14, 6 * (2 if z_up else 1))
    torch.testing.assert_close(fast, reference, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # the form exported graphs take
        exported_form = phase_convolutions(x, head._upsamplings(), head[2])
    torch.testing.assert_close(exported_form, reference, atol=1e-5, rtol=1e-5)
    assert (fast[1] - fast[0]).abs().max() > 0.1  # each sample its own result

    head.train()  # training runs the layers (BN batch statistics, gradients)
    out = head(x)
    out.sum().backward()
    assert head[1].up_bn[0].weight.grad is not None
    assert not torch.allclose(out, reference)


def test_head_of_another_geometry_runs_its_layers():
    head = ClassHead(nn.Identity(), Upsample(4, 4), nn.Conv3d(4, 3, 1)).eval()
    head[1].up_bn[0] = nn.ConvTranspose3d(4, 4, 3, stride=3, padding=1, output_padding=2)
    head.subpixel = True
    assert head._upsamplings() is None
    x = torch.randn(1, 4, 3, 3, 3)
    with torch.no_grad():
        assert head(x).shape == (1, 3, 9, 9, 9)


def test_class_labels_is_argmax_first_on_ties():
    torch.manual_seed(0)
    logits = torch.randint(0, 4, (2, 7, 9, 10, 3)).float()  # many ties
    np.testing.assert_array_equal(class_labels(logits).numpy(), logits.argmax(1).numpy())
    assert class_labels(logits).dtype == torch.uint8


def test_optimized_backend_equals_the_authors_layers():
    torch.manual_seed(0)
    model = SMALL_PRESET.model.build()
    inputs = Predictor(model, SMALL_PRESET).prepare(*[[x] for x in small_frame(4)])
    reference = TorchBackend(model, optimize=False).run(inputs)
    optimized = TorchBackend(model, optimize=True).run(inputs)
    torch.testing.assert_close(optimized[1], reference[1], atol=2e-5, rtol=1e-5)
    assert (optimized[0] == reference[0]).mean() >= 0.9999


def test_keep_freed_memory_keeps_large_blocks_in_the_heap():
    """With the thresholds raised, a 256 MB tensor comes from glibc's heap (not a private mmap
    that is unmapped on free) and stays there, free for the next frame, after it is deleted.

    Asserts the allocator's own accounting (mallinfo2), not page-fault counts: those depend on
    the machine (kernel, huge pages, hypervisor)."""
    script = textwrap.dedent('''
        import ctypes, sys, torch
        from ssc_core.backends.host_memory import keep_freed_memory
        class MallInfo2(ctypes.Structure):
            _fields_ = [(name, ctypes.c_size_t) for name in (
                'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks',
                'uordblks', 'fordblks', 'keepcost')]
        libc = ctypes.CDLL('libc.so.6')
        libc.mallinfo2.restype = MallInfo2
        if sys.argv[1] == 'keep':
            assert keep_freed_memory() and keep_freed_memory()
        x = torch.ones(64 * 2**20)
        held = libc.mallinfo2()
        del x
        freed = libc.mallinfo2()
        print(held.hblkhd, freed.arena, freed.fordblks)
    ''')
    block = 256 * 2**20
    stats = {}
    for mode in ('default', 'keep'):
        out = subprocess.run([sys.executable, '-c', script, mode], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-2000:]
        stats[mode] = dict(zip(('mmapped_while_held', 'heap_after_free', 'free_in_heap'),
                               map(int, out.stdout.split()), strict=True))
    print(f'glibc accounting around a freed 256 MB tensor: {stats}')
    assert stats['default']['mmapped_while_held'] >= block  # glibc's default: a private mapping
    assert stats['keep']['mmapped_while_held'] < block
    assert stats['keep']['heap_after_free'] >= block and stats['keep']['free_in_heap'] >= block


@pytest.mark.slow
def test_torch_compile_backend():
    """The compiled path runs (Inductor compiles the whole forward as one graph, no eager
    fallback) and agrees."""
    from torch._dynamo.utils import counters
    predictor = Predictor.from_checkpoint(BUILTIN_CHECKPOINT, backend='torch_compile')
    eager = Predictor.from_checkpoint(BUILTIN_CHECKPOINT)
    frame = sample_frame(eager.preset)
    inputs = eager.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
    graphs_before = counters['stats']['unique_graphs']
    breaks_before = sum(counters['graph_break'].values())
    compiled_labels = predictor.labels(inputs)
    assert counters['stats']['unique_graphs'] == graphs_before + 1, 'not one graph'
    assert sum(counters['graph_break'].values()) == breaks_before
    assert predictor.backend.compiled and 'compiled' in predictor.backend.describe()
    agreement = (compiled_labels == eager.labels(inputs)).mean()
    print(f'torch.compile vs eager on the built-in model: {agreement:.6%}')
    assert agreement >= 0.9999


@pytest.mark.slow
def test_torch_compile_falls_back_to_eager_where_it_cannot_compile(tmp_path):
    """No C++ compiler: the backend warns once and answers eagerly."""
    script = textwrap.dedent('''
        import numpy as np
        from ssc_core.checkpoint import BUILTIN_CHECKPOINT
        from ssc_core.data.sample import sample_frame
        from ssc_core.predictor import Predictor
        compiled = Predictor.from_checkpoint(BUILTIN_CHECKPOINT, backend='torch_compile')
        eager = Predictor.from_checkpoint(BUILTIN_CHECKPOINT)
        frame = sample_frame(eager.preset)
        inputs = eager.prepare([frame.image], [frame.depth], [frame.K], [frame.cam_from_grid])
        same = (compiled.labels(inputs) == eager.labels(inputs)).mean()
        print(same, compiled.backend.describe())
    ''')
    env = {**os.environ, 'CXX': '/nonexistent/g++', 'CC': '/nonexistent/gcc',
           'TORCHINDUCTOR_CACHE_DIR': str(tmp_path / 'inductor'), 'TORCHINDUCTOR_FX_GRAPH_CACHE': '0'}
    out = subprocess.run([sys.executable, '-c', script], capture_output=True, text=True, env=env)
    assert out.returncode == 0, out.stderr[-3000:]
    assert 'torch.compile failed, running eager instead' in out.stderr
    assert 'C++ compiler' in out.stderr
    assert out.stdout.split()[0] == '1.0' and 'eager' in out.stdout


def test_per_token_slices_give_the_whole_axis_result(monkeypatch):
    """Feed-forward blocks and deformable attention over slices of the queries (inference) give
    bit for bit what one call over all of them gives, and slices are really taken."""
    from ssc_core.model import chunks
    from ssc_core.model.deform_attn import DeformableSqueezeAttention
    from ssc_core.model.transformer import DeformableTransformerLayer
    layer = DeformableTransformerLayer(32, 4, 1, 8, attn_layer=DeformableSqueezeAttention).eval()
    query, value, pos = (torch.randn(2, 16 * 16 * 4, 32) for _ in range(3))
    refs = torch.rand(2, query.shape[1], 1, 3)
    with torch.no_grad():
        whole = layer(query, value, pos, refs, [(16, 16, 4)])
        calls = []
        slice_of = chunks.in_slices
        monkeypatch.setattr(chunks, 'CHUNK_BYTES', 20_000)
        for module in ('transformer', 'deform_attn'):
            monkeypatch.setattr(f'ssc_core.model.{module}.in_slices',
                                lambda fn, *a, **k: calls.append(1) or slice_of(fn, *a, **k))
        sliced = layer(query, value, pos, refs, [(16, 16, 4)])
        assert chunks.slice_plan(query, 1000) == (20, 52)
    assert len(calls) == 1 + 1 + 27  # FFN, attention, and the sampling in each of its 27 slices
    assert chunks.slice_plan(query, 1000) is None  # training
    assert torch.equal(sliced, whole)
    with torch.enable_grad():  # training: one call, gradients flow
        layer(query.requires_grad_(), value, pos, refs, [(16, 16, 4)]).sum().backward()
    assert query.grad is not None and torch.isfinite(query.grad).all()
