"""The semantic map (ssc_core.mapping): the evidence rule, resampling, clearing, bounds, decay,
refusals, files; and the poses of a sequence (ssc_core.data.poses)."""
import numpy as np
import pytest
import torch

from ssc_core.data.poses import PoseError, base_poses, grid_poses, read_poses, read_times
from ssc_core.labels import SEMANTIC_KITTI_CLASSES
from ssc_core.mapping import (
    MapError,
    SemanticMap,
    evidence,
    kernels,
    load_map,
    occupied_points,
    save_map,
    write_ply,
)
from ssc_core.mapping.evidence import UNKNOWN
from ssc_core.mapping.temporal import Flicker, FramePrediction, fused_labels

CLASSES = SEMANTIC_KITTI_CLASSES
SHAPE = (32, 32, 8)
ORIGIN = (0.0, -3.2, -0.8)
CAR, ROAD, BUILDING = CLASSES.index('car'), CLASSES.index('road'), CLASSES.index('building')


def new_map(**kw):
    return SemanticMap(0.2, CLASSES, ORIGIN, **kw)


def pose(yaw_deg=0.0, t=(0.0, 0.0, 0.0)):
    a = np.radians(yaw_deg)
    p = np.eye(4)
    p[:2, :2] = [[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]
    p[:3, 3] = t
    return p


def random_labels(seed=0, shape=SHAPE):
    return np.random.default_rng(seed).integers(0, len(CLASSES), shape).astype(np.uint8)


def reference_update(L, z, w, clamp):
    """Kimera's log-likelihood update with octomap's clamp, for every class (floats)."""
    L = L.copy()
    L[np.arange(len(z)), z] += w
    L -= L.max(1, keepdims=True)
    return np.maximum(L, -clamp)


@pytest.mark.parametrize('per_voxel', [False, True])
def test_evidence_with_all_classes_in_slots_is_the_exact_rule(per_voxel):
    rng = np.random.default_rng(0)
    n, c = 2000, 5
    state = evidence.empty_state((n,), c)
    L = np.zeros((n, c))
    for _ in range(40):
        z = np.where(rng.random(n) < 0.5, 0, rng.integers(0, c, n))
        w = rng.integers(1, 120, n) if per_voxel else 60
        state = evidence.observe(state, torch.from_numpy(z), torch.from_numpy(w) if per_voxel else w)
        L = reference_update(L, z, w, evidence.CLAMP)
        probs = evidence.probabilities(state, c, 0.05).numpy()
        expected = np.exp(0.05 * L) / np.exp(0.05 * L).sum(1, keepdims=True)
        np.testing.assert_allclose(probs, expected, atol=1e-5)
        best = evidence.best(state).numpy()
        assert np.all(L[np.arange(n), best] == 0)   # the best class is in slot 0
        assert np.all(state[:, c].numpy() == 0)     # ... with deficit 0


def test_evidence_in_three_slots_keeps_the_best_class():
    rng = np.random.default_rng(1)
    n, c = 4000, 20
    state = evidence.empty_state((n,), 3)
    L = np.zeros((n, c))
    agree = []
    for _ in range(30):   # a mostly-consistent class per voxel with 30 % noise
        truth = np.arange(n) % c
        z = np.where(rng.random(n) < 0.7, truth, rng.integers(0, c, n))
        state = evidence.observe(state, torch.from_numpy(z), 40)
        L = reference_update(L, z, 40, evidence.CLAMP)
        agree.append(np.mean(L[np.arange(n), evidence.best(state).numpy()] == 0))
    assert np.mean(agree) > 0.98


def test_eager_and_dense_fusion_agree():
    torch.manual_seed(0)
    blocks, voxels = 40, 64
    state = evidence.empty_state((blocks * voxels,), 3)
    n = blocks * voxels
    for _ in range(20):   # a quarter of the voxels never seen (slot 0 empty, as UNKNOWN codes read)
        state = evidence.observe(state, torch.randint(0, 6, (n,)), torch.randint(0, 100, (n,)),
                                 seen=torch.arange(n) % 4 > 0)
    state = state.reshape(blocks, voxels, -1)
    for per_voxel in (False, True):
        for _ in range(5):
            agree = torch.rand(blocks, voxels) < 0.6
            code = torch.where(agree, state[..., 0].long(), torch.randint(0, 6, (blocks, voxels)))
            code = torch.where(torch.rand(blocks, voxels) < 0.2, UNKNOWN, code).to(torch.uint8)
            weight = torch.randint(0, 120, (blocks, voxels), dtype=torch.int16) if per_voxel else 71
            dense = kernels.fuse(state, code, weight)
            assert torch.equal(dense, kernels.fuse_sparse(state, code, weight))
            state = dense


@pytest.mark.parametrize('slots', [1, 2, 3, 5])
def test_the_best_class_stays_in_the_first_slot(slots):
    """Whatever is observed (ties, evictions, zero weights), slot 0 holds a class with the most
    evidence: its deficit is 0 wherever the voxel has evidence."""
    rng = np.random.default_rng(slots)
    n = 20000
    state = evidence.empty_state((n,), slots)
    for _ in range(30):
        z = torch.from_numpy(rng.integers(0, 6, n))
        w = torch.from_numpy(rng.integers(0, 100, n))
        state = evidence.observe(state, z, w, seen=torch.from_numpy(rng.random(n) < 0.7))
        has_evidence = state[:, 2 * slots] > 0
        assert not bool((has_evidence & (state[:, slots] != 0)).any())
        assert not bool((has_evidence & (state[:, 0] == evidence.EMPTY_SLOT)).any())


@pytest.mark.parametrize('slots, block_size', [(3, 8), (1, 4), (5, 16)])
def test_native_and_torch_kernels_build_the_same_map(slots, block_size):
    """The C pass and the torch kernels, bit for bit: rotations, per-voxel confidences, unobserved
    voxels, decay and the radius over a drive."""
    rng = np.random.default_rng(0)
    kw = dict(slots=slots, block_size=block_size, half_life=2.0, radius=12.0)
    maps = [new_map(kernels='native', **kw), new_map(kernels='torch', **kw)]
    assert [m.kernels.kind for m in maps] == ['native', 'torch']
    truth = random_labels(1)
    for i in range(12):
        labels = np.where(rng.random(SHAPE) < 0.1, random_labels(i), truth)
        seen = rng.random(SHAPE) < 0.8
        confidence = rng.uniform(0.05, 1.0, SHAPE).astype(np.float32) if i % 2 else None
        world_from_grid = pose(7.0 * i + rng.normal(0, 2), (0.45 * i, 0.13 * i, rng.normal(0, 0.1)))
        for m in maps:
            m.integrate(labels, seen, world_from_grid, 0.5 * i, confidence=confidence)
    native_map, torch_map = maps
    for name in ('coords', 'used', 'decayed_at', 'state'):
        assert torch.equal(getattr(native_map, name), getattr(torch_map, name)), name
    assert native_map.num_blocks > 0


def test_frames_beyond_the_c_pass_limit_take_the_torch_way(monkeypatch):
    """The C pass forms flat indices in float32 (exact up to 2^24 voxels): a larger frame is
    integrated by the torch kernels, to the same map."""
    from ssc_core.mapping import native
    monkeypatch.setattr(native, 'MAX_FRAME_VOXELS', SHAPE[0] * SHAPE[1] * SHAPE[2] - 1)
    calls = []
    monkeypatch.setattr(native, 'fuse_blocks', lambda *a: calls.append(a))
    limited, reference = new_map(kernels='native'), new_map(kernels='torch')
    for m in (limited, reference):
        m.integrate(random_labels(0), np.ones(SHAPE, bool), pose(15, (0.3, 0.1, 0)), 0.0)
    assert not calls and torch.equal(limited.state, reference.state)


def test_empty_frames_and_too_many_classes():
    m = new_map()
    m.integrate(np.zeros((0, 4, 4), np.uint8), np.zeros((0, 4, 4), bool), pose(), 0.0)   # nothing seen
    assert m.frames == 1 and m.num_blocks == 0
    with pytest.raises(ValueError, match='class_names: expected 2..255 classes, got 256'):
        SemanticMap(0.2, [f'c{i}' for i in range(256)], ORIGIN)


def test_the_c_pass_library_is_checked_before_it_is_loaded(tmp_path, monkeypatch):
    """A damaged cached library (it would crash the process when loaded) is built again; $CC may
    carry arguments; a cache that cannot be written gives way to a folder of this user's in the
    temporary directory; a failing compiler is named with its exit status."""
    from ssc_core.mapping import native

    def fresh():
        native.library.cache_clear()
        return native.library()

    monkeypatch.setattr(native.tempfile, 'tempdir', str(tmp_path / 'tmp'))
    (tmp_path / 'tmp').mkdir()
    try:
        monkeypatch.setenv('SSC_CACHE_DIR', str(tmp_path / 'cache'))
        monkeypatch.setenv('CC', 'gcc -DSSC_TEST=1')
        assert fresh()[0] is not None
        built = next((tmp_path / 'cache').glob('*.so'))
        damaged = tmp_path / 'damaged.so'   # a new file: this process has the old one mapped
        damaged.write_bytes(built.read_bytes()[:1000])       # truncated, as by a full disk
        damaged.replace(built)
        assert fresh()[0] is not None and built.stat().st_size > 1000
        (tmp_path / 'file').write_text('')
        monkeypatch.setenv('SSC_CACHE_DIR', str(tmp_path / 'file' / 'cache'))   # cannot be made
        assert fresh()[0] is not None and list((tmp_path / 'tmp').glob('ssc_ros-*/*.so'))
        monkeypatch.setenv('CC', 'false')
        monkeypatch.setenv('SSC_CACHE_DIR', str(tmp_path / 'other'))
        lib, why = fresh()
        assert lib is None and why.startswith('false failed on') and '(exit 1)' in why
    finally:
        native.library.cache_clear()


def test_kernels_choice_and_a_missing_compiler(tmp_path):
    """auto takes the C pass where a compiler builds it and torch otherwise, saying why; native
    without it is refused with the reason; the kinds are checked."""
    from ssc_core.mapping import native
    expected = "kernels: expected one of auto, native, torch, torch_compile, got 'c'"
    with pytest.raises(ValueError, match=expected):
        new_map(kernels='c')
    with pytest.raises(ValueError, match='kernels native: it runs on the CPU, not cuda'):
        kernels.Kernels('native', 'cuda')
    assert kernels.Kernels('auto', 'cuda').kind == 'torch'
    assert new_map().kernels.kind == 'native'
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv('CC', str(tmp_path / 'no-such-cc'))
        mp.setenv('SSC_CACHE_DIR', str(tmp_path / 'cache'))
        native.library.cache_clear()
        try:
            fallback = new_map().kernels
            assert fallback.kind == 'torch' and 'could not build' in str(fallback)
            with pytest.raises(ValueError, match='kernels native: could not build .*no-such-cc'):
                new_map(kernels='native')
        finally:
            native.library.cache_clear()
    assert new_map(kernels='native').kernels.kind == 'native'


def test_a_frame_comes_back_where_it_was_seen():
    labels = random_labels()
    seen = np.random.default_rng(1).random(SHAPE) < 0.8
    m = new_map()
    m.integrate(labels, seen, pose(), 0.0)
    np.testing.assert_array_equal(m.crop(pose(), SHAPE), np.where(seen, labels, UNKNOWN))


@pytest.mark.parametrize('shift', [(3, -5, 1), (-7, 2, 0), (0, 0, -3)])
def test_whole_voxel_translations_are_exact(shift):
    labels = random_labels(2)
    m = new_map()
    m.integrate(labels, np.ones(SHAPE, bool), pose(t=np.array(shift) * 0.2), 0.0)
    later = pose()
    got = m.crop(later, SHAPE)   # frame voxel g is map voxel g, which held frame voxel g - shift
    expected = np.full(SHAPE, UNKNOWN, np.uint8)
    src = tuple(slice(max(0, -s), n - max(0, s)) for s, n in zip(shift, SHAPE, strict=True))
    dst = tuple(slice(max(0, s), n - max(0, -s)) for s, n in zip(shift, SHAPE, strict=True))
    expected[dst] = labels[src]
    np.testing.assert_array_equal(got, expected)


@pytest.mark.parametrize('steps', [0.5, 1.5, 2.5])
def test_half_voxel_translations_round_trip(steps):
    """A 1 m step on the built-in model's 0.4 m grid: every centre on a voxel boundary."""
    labels = random_labels(3)
    m = SemanticMap(0.4, CLASSES, (0, -25.6, -2))
    at = pose(t=(steps * 0.4, 0, 0))
    m.integrate(labels, np.ones(SHAPE, bool), at, 0.0)
    np.testing.assert_array_equal(m.crop(at, SHAPE), labels)


def test_rotations_fill_every_map_voxel_in_view_once():
    labels = random_labels(4)
    quarter = new_map()
    quarter.integrate(labels, np.ones(SHAPE, bool), pose(90, (1.0, 2.0, 0)), 0.0)
    np.testing.assert_array_equal(quarter.crop(pose(90, (1.0, 2.0, 0)), SHAPE), labels)
    m = new_map()
    at = pose(17, (1.33, -0.71, 0.13))
    m.integrate(labels, np.ones(SHAPE, bool), at, 0.0)
    voxels, _ = m.voxels()
    assert len(np.unique(voxels, axis=0)) == len(voxels)
    # about as many map voxels as frame voxels (a rotated box of the same volume, no holes)
    assert abs(len(voxels) / labels.size - 1) < 0.12
    inner = (slice(2, -2), slice(2, -2), slice(1, -1))
    back = m.crop(at, SHAPE)
    assert (back[inner] != UNKNOWN).all()
    assert (back[inner] == labels[inner]).mean() > 0.8   # nearest of nearest, random labels


def test_a_car_that_drove_away_is_cleared():
    m = new_map(change_after=4)
    labels = np.zeros(SHAPE, np.uint8)
    labels[:, :, 0] = ROAD
    parked = labels.copy()
    parked[10:20, 10:15, 1:4] = CAR
    seen = np.ones(SHAPE, bool)
    for t in range(10):
        m.integrate(parked, seen, pose(), float(t))
    assert (m.crop(pose(), SHAPE)[10:20, 10:15, 1:4] == CAR).all()
    gone = []
    for t in range(10, 16):
        m.integrate(labels, seen, pose(), float(t))
        gone.append((m.crop(pose(), SHAPE)[10:20, 10:15, 1:4] == 0).mean())
    assert gone == [0, 0, 0, 1, 1, 1]   # the fourth contrary observation changes it


def test_confidence_weights_observations():
    m = new_map()
    probs = np.full((len(CLASSES), *SHAPE), 0.01, np.float32)
    probs[CAR] = 0.81
    seen = np.ones(SHAPE, bool)
    m.integrate(probs, seen, pose(), 0.0)
    low = np.full_like(probs, 0.045)
    low[ROAD] = 0.145   # barely above chance: little evidence
    m.integrate(low, seen, pose(), 1.0)
    labels, p = m.crop(pose(), SHAPE, probabilities=True)
    assert (labels == CAR).all()
    assert p.shape == probs.shape and np.allclose(p.sum(0), 1, atol=1e-5)
    assert (p[CAR] > p[ROAD]).all() and (p[ROAD] > p[BUILDING]).all()
    logits = np.log(probs)
    m.integrate(logits, seen, pose(), 2.0, logits=True)


def test_the_radius_bounds_the_map_and_its_memory():
    m = new_map(radius=12.0, max_jump=None)
    labels = np.full(SHAPE, ROAD, np.uint8)
    seen = np.ones(SHAPE, bool)
    sizes, blocks = [], []
    for t in range(60):
        at = pose(t=(3.0 * t, 0, 0))
        m.integrate(labels, seen, at, float(t))
        sizes.append(m.nbytes)
        blocks.append(m.num_blocks)
        voxels, _ = m.voxels()
        centres = m.centres(voxels)
        block_reach = m.block_size * m.voxel_size * np.sqrt(3) / 2
        assert np.linalg.norm(centres - at[:3, 3], axis=1).max() <= 12.0 + block_reach
    assert sizes[20:] == [sizes[20]] * 40   # capacity reused: flat
    assert max(blocks) <= 3 * blocks[0]
    unbounded = new_map(max_jump=None)
    for t in range(60):
        unbounded.integrate(labels, seen, pose(t=(3.0 * t, 0, 0)), float(t))
    assert unbounded.num_blocks > 5 * max(blocks)


def test_old_evidence_decays_to_unknown():
    m = new_map(half_life=2.0)
    labels = np.full(SHAPE, BUILDING, np.uint8)
    seen = np.zeros(SHAPE, bool)
    seen[:16] = True
    m.integrate(labels, seen, pose(), 0.0)
    later = np.zeros(SHAPE, bool)
    later[16:] = True
    m.integrate(labels, later, pose(), 5.0)
    _, p5 = m.crop(pose(), SHAPE, probabilities=True)
    assert p5[BUILDING, :16].max() < p5[BUILDING, 16:].min()   # older: less certain
    m.integrate(labels, later, pose(), 30.0)
    got = m.crop(pose(), SHAPE)
    assert (got[:16] == UNKNOWN).all() and (got[16:] == BUILDING).all()


def snapshot(m):
    return (m.state.clone(), m.coords.clone(), m.used.clone(), m.last_stamp, m.frames)


def assert_unchanged(m, before):
    after = snapshot(m)
    assert all(torch.equal(a, b) for a, b in zip(before[:3], after[:3], strict=True))
    assert before[3:] == after[3:]


@pytest.mark.parametrize('case, message', [
    ('teleport', 'jumped 25.00 m'),
    ('back in time', 'earlier than the last'),
    ('nan logits', 'not finite'),
    ('not rigid', 'not a rotation'),
    ('nan pose', 'not finite'),
    ('bad label', 'labels outside 0..19'),
    ('bad mask', 'bool mask of shape'),
])
def test_refused_frames_leave_the_map_untouched(case, message):
    m = new_map(max_jump=10.0)
    labels = random_labels(5)
    seen = np.ones(SHAPE, bool)
    m.integrate(labels, seen, pose(), 1.0)
    before = snapshot(m)
    frame, mask, at, stamp, logits = labels, seen, pose(), 2.0, False
    if case == 'teleport':
        at = pose(t=(25.0, 0, 0))
    elif case == 'back in time':
        stamp = 0.5
    elif case == 'nan logits':
        frame = np.zeros((len(CLASSES), *SHAPE), np.float32)
        frame[3, 1, 2, 3] = np.nan
        logits = True
    elif case == 'not rigid':
        at = np.diag([2.0, 1, 1, 1])
    elif case == 'nan pose':
        at = pose(t=(np.nan, 0, 0))
    elif case == 'bad label':
        frame = labels.astype(np.int64)
        frame[0, 0, 0] = 20
    elif case == 'bad mask':
        mask = np.ones((4, 4, 4), bool)
    with pytest.raises(MapError, match=message) as refused:
        m.integrate(frame, mask, at, stamp, logits=logits)
    assert '\n' not in str(refused.value) and str(refused.value).startswith('frame refused')
    assert_unchanged(m, before)
    m.integrate(labels, seen, pose(t=(0.2, 0, 0)), 3.0)   # and it goes on


def test_npz_round_trips_exactly(tmp_path):
    m = new_map(half_life=30.0, radius=50.0)
    for t in range(4):
        m.integrate(random_labels(t), np.ones(SHAPE, bool), pose(5 * t, (0.4 * t, 0, 0)), float(t))
    path = save_map(m, tmp_path / 'map.npz')
    back = load_map(path, voxel_size=0.2, class_names=CLASSES)
    assert (back.half_life, back.radius, back.slots, back.frames) == (30.0, 50.0, 3, 4)
    for read in (lambda x: x.voxels(), lambda x: x.crop(pose(7, (0.5, 0.1, 0)), SHAPE, probabilities=True)):
        for x, y in zip(read(m), read(back), strict=True):
            np.testing.assert_array_equal(x, y)
    np.testing.assert_array_equal(back.last_pose, m.last_pose)
    # it integrates on as the original does
    for each in (m, back):
        each.integrate(random_labels(9), np.ones(SHAPE, bool), pose(20, (1.6, 0, 0)), 9.0)
    np.testing.assert_array_equal(m.crop(pose(), SHAPE), back.crop(pose(), SHAPE))
    assert load_map(path, radius=5.0).radius == 5.0


def test_a_file_of_fortran_ordered_arrays_integrates_as_its_c_ordered_twin(tmp_path):
    """An .npy header may say fortran_order: the map takes the arrays in C order for its C pass."""
    m = new_map()
    m.integrate(random_labels(0), np.ones(SHAPE, bool), pose(), 0.0)
    path = save_map(m, tmp_path / 'map.npz')
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    fortran = {k: np.asfortranarray(v) if v.ndim > 1 else v for k, v in arrays.items()}
    np.savez(tmp_path / 'fortran.npz', **fortran)
    with np.load(tmp_path / 'fortran.npz') as data:
        assert not data['state'].flags.c_contiguous
    maps = [load_map(p, voxel_size=0.2, class_names=CLASSES) for p in (path, tmp_path / 'fortran.npz')]
    for each in maps:
        each.integrate(random_labels(1), np.ones(SHAPE, bool), pose(), 1.0)   # no new blocks
    assert maps[1].kernels.kind == 'native' and torch.equal(maps[0].state, maps[1].state)


def test_a_map_for_another_network_or_a_broken_file_is_refused(tmp_path):
    m = new_map()
    m.integrate(random_labels(), np.ones(SHAPE, bool), pose(), 0.0)
    path = save_map(m, tmp_path / 'map.npz')
    with pytest.raises(MapError, match=r"voxel_size is 0\.2, expected 0\.4"):
        load_map(path, voxel_size=0.4)
    with pytest.raises(MapError, match='class_names is .* expected'):
        load_map(path, class_names=(*CLASSES[:19], 'other'))
    broken = tmp_path / 'broken.npz'
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(MapError, match='broken.npz: cannot read'):
        load_map(broken)
    with np.load(path) as data:
        arrays = dict(data)
    arrays['state'] = arrays['state'][:, :, :5]
    np.savez(tmp_path / 'shape.npz', **arrays)
    with pytest.raises(MapError, match=r'state is uint8 .*, expected uint8'):
        load_map(tmp_path / 'shape.npz')


def test_a_failed_save_leaves_the_last_good_file(tmp_path, monkeypatch):
    m = new_map()
    m.integrate(random_labels(), np.ones(SHAPE, bool), pose(), 0.0)
    path = save_map(m, tmp_path / 'map.npz')
    good = path.read_bytes()
    m.integrate(random_labels(1), np.ones(SHAPE, bool), pose(), 1.0)

    def crash(f, **arrays):
        f.write(b'PK half a file')
        raise OSError('disk full')
    monkeypatch.setattr(np, 'savez', crash)
    with pytest.raises(OSError, match='disk full'):
        save_map(m, path)
    assert path.read_bytes() == good and [p.name for p in tmp_path.iterdir()] == ['map.npz']


def test_ply_holds_the_occupied_voxels_with_colours(tmp_path):
    m = new_map()
    labels = np.zeros(SHAPE, np.uint8)
    labels[2:4, 5:6, 1] = CAR
    m.integrate(labels, np.ones(SHAPE, bool), pose(), 0.0)
    centres, classes = occupied_points(m)
    path = write_ply(tmp_path / 'map.ply', centres, classes, CLASSES)
    data = path.read_bytes()
    header, body = data.split(b'end_header\n')
    assert b'element vertex 2' in header and b'format binary_little_endian 1.0' in header
    points = np.frombuffer(body, [('x', '<f4'), ('y', '<f4'), ('z', '<f4'), ('r', 'u1'), ('g', 'u1'),
                                  ('b', 'u1'), ('label', 'u1')])
    assert (points['label'] == CAR).all()
    assert (points['r'] == 100).all() and (points['g'] == 150).all() and (points['b'] == 245).all()
    np.testing.assert_allclose(np.sort(points['x']), [0.5, 0.7])
    np.testing.assert_allclose(points['y'], -3.2 + 5.5 * 0.2)


def test_fusing_one_frame_is_the_frame_and_flicker_counts_changes():
    labels = random_labels(6)
    fov = np.zeros(SHAPE, bool)
    fov[:, 8:24] = True
    frame = FramePrediction(labels, fov, pose(), 0.0)
    np.testing.assert_array_equal(fused_labels([frame], new_map), labels)
    flicker = Flicker(new_map())
    target = labels.copy()
    flicker.add(labels, target, pose())
    flicker.add(np.roll(labels, 1, 0), np.roll(target, 1, 0), pose(t=(0.2, 0, 0)))   # same world, moved
    assert flicker.stable > 0 and flicker.value == 0
    changed = labels.copy()
    changed[:16] = 0
    again = Flicker(new_map())
    again.add(labels, target, pose())
    again.add(changed, target, pose())
    assert again.stable == labels.size and again.changed == (labels[:16] != 0).sum()


def write_poses(path, poses):
    path.write_text(''.join(' '.join(f'{v:.9e}' for v in p[:3].ravel()) + '\n' for p in poses))


def test_poses_give_each_grid_in_the_world(tmp_path):
    tr = np.array([[0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1.0]])
    camera = [pose(t=(0, 0, float(i))) for i in range(3)]   # 1 m per frame along the camera's z
    write_poses(tmp_path / 'poses.txt', camera)
    world = grid_poses(read_poses(tmp_path / 'poses.txt', 3), tr)
    forward = [[0, 0, 0], [1, 0, 0], [2, 0, 0]]   # the grid's x is the camera's z
    np.testing.assert_allclose(world[:, :3, 3], forward, atol=1e-9)
    (tmp_path / 'times.txt').write_text('0.0\n0.1\n0.2\n')
    np.testing.assert_allclose(read_times(tmp_path / 'times.txt', 3), [0, 0.1, 0.2])


@pytest.mark.parametrize('case, message', [
    ('short', r'poses.txt: 2 poses for a sequence of 3 images \(line 3 missing\)'),
    ('nan', r'poses.txt:2: pose is not finite'),
    ('scaled', r'poses.txt:2: its 3x3 part is not a rotation'),
    ('words', r"poses.txt:2: unreadable pose line"),
    ('eleven', r'poses.txt:2: expected 12 numbers'),
])
def test_bad_poses_name_file_and_line(tmp_path, case, message):
    poses = [pose(), pose(t=(0, 0, 1)), pose(t=(0, 0, 2))]
    write_poses(tmp_path / 'poses.txt', poses[:2] if case == 'short' else poses)
    lines = (tmp_path / 'poses.txt').read_text().splitlines()
    if case == 'nan':
        lines[1] = lines[1].replace(lines[1].split()[3], 'nan', 1)
    elif case == 'scaled':
        lines[1] = ' '.join(str(2 * float(v)) for v in lines[1].split())
    elif case == 'words':
        lines[1] = 'one two three'
    elif case == 'eleven':
        lines[1] = ' '.join(lines[1].split()[:11])
    (tmp_path / 'poses.txt').write_text('\n'.join(lines) + '\n')
    with pytest.raises(PoseError, match=message):
        read_poses(tmp_path / 'poses.txt', 3)


def test_the_labels_box_is_every_voxel_in_place():
    """labels_box holds each known voxel's class at its map coordinates (corner + index) and UNKNOWN
    elsewhere; an empty map gives an empty box."""
    m = new_map()
    box, corner = m.labels_box()
    assert box.shape == (0, 0, 0)
    observed = np.random.default_rng(2).random(SHAPE) < 0.6
    m.integrate(random_labels(1), observed, pose(30, (1.0, -0.4, 0.2)), 0.0)
    box, corner = m.labels_box()
    voxels, labels = m.voxels()
    np.testing.assert_array_equal(box[tuple((voxels - corner).T)], labels)
    assert np.count_nonzero(box != UNKNOWN) == len(labels) > 0
    assert box.dtype == np.uint8 and all(s % m.block_size == 0 for s in box.shape)


def test_base_poses_are_the_grid_poses_seen_from_the_base():
    """odom -> base_link from the grid's poses and its mount: a base 1.73 m below the grid moves as
    the grid does, and the grid sits at the mount in every base frame."""
    mount = np.eye(4)
    mount[2, 3] = 1.73
    def pitch(a):   # up a slope
        p = np.eye(4)
        p[[0, 0, 2, 2], [0, 2, 0, 2]] = np.cos(a), np.sin(a), -np.sin(a), np.cos(a)
        return p
    world = np.stack([pose(10 * i, (float(i), 0.5 * i, 0.1 * i)) @ pitch(0.1 * i) for i in range(3)])
    base = base_poses(world, mount)
    for b, w in zip(base, world, strict=True):
        np.testing.assert_allclose(b @ mount, mount @ w, atol=1e-12)   # the grid, reached both ways
    np.testing.assert_allclose(base[0], np.eye(4), atol=1e-12)          # odom = the first base frame
