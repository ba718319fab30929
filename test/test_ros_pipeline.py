"""The node's bookkeeping without DDS: stamp pairing, the latest-item worker, health, parameter checks."""
import threading
import time

import numpy as np
import pytest

from ssc_ros.health import OK, WARN, Health
from ssc_ros.pairing import StampPairer
from ssc_ros.parameters import PARAMETERS, check, class_filter_ids, pose_parameter, type_mismatch, unknown
from ssc_ros.worker import LatestSlot, Worker


def add(pairer, kind, stamp, msg, arrival=None, taken=None):
    """An input that arrived at its stamp (unless told) and was taken at once (unless told)."""
    arrival = stamp if arrival is None else arrival
    return pairer.add(kind, stamp, msg, arrival, arrival if taken is None else taken)


def test_pairing_newest_image_with_closest_depth():
    pairer = StampPairer(slop=0.05, queue_size=10)
    assert add(pairer, 'image', 1.0, 'i1').pair is None
    assert add(pairer, 'image', 1.1, 'i2').pair is None
    outcome = add(pairer, 'depth', 1.09, 'd2')
    assert (outcome.pair.image, outcome.pair.depth, outcome.pair.stamp) == ('i2', 'd2', 1.1)
    assert pairer.unpaired == {'image': 1}             # i1 can no longer pair
    assert not outcome.notices                          # it lost its depth: no offset to report
    add(pairer, 'depth', 1.2, 'd3')
    assert add(pairer, 'image', 1.21, 'i3').pair.depth == 'd3'
    assert pairer.unpaired == {'image': 1}


def test_depth_too_far_is_not_time_jumping_back():
    """Depth stamped 1 s early, arriving with its image: images go unpaired with the offset
    named, no restart."""
    pairer = StampPairer(slop=0.05, queue_size=3)
    notices = []
    for i in range(10):
        t = 10.0 + 0.1 * i
        notices += add(pairer, 'image', t, f'i{i}').notices
        notices += add(pairer, 'depth', t - 1.0, f'd{i}', arrival=t).notices
    assert {n.kind for n in notices} == {'depth_too_far'}
    assert 'depths arrive with stamps 1.000 s behind the images arriving with them (image discarded' \
        in notices[0].text
    assert pairer.unpaired['image'] == 7 and pairer.unpaired['depth'] == 7


def test_a_node_behind_its_inputs_is_not_told_to_fix_the_stamps():
    """Right stamps, images and depths arriving together at 10 Hz, but the node takes the images
    up to 1.1 s late (its executor starved): input_lag, never depth_too_far."""
    pairer = StampPairer(slop=0.05, queue_size=10)
    notices, images = [], []
    for i in range(60):
        t = 100.0 + 0.1 * i
        notices += add(pairer, 'depth', t, f'd{i}').notices
        images.append((t, f'i{i}'))
        if i % 12 == 11:                                  # every 1.2 s the node catches up on images
            for stamp, msg in images:
                notices += add(pairer, 'image', stamp, msg, taken=t).notices
            images.clear()
    kinds = {n.kind for n in notices}
    assert 'depth_too_far' not in kinds and 'check the stamps' not in ' '.join(n.text for n in notices)
    assert kinds == {'input_lag'}
    assert 'image taken 1.100 s after it arrived' in notices[0].text
    assert 'behind its inputs' in notices[0].text


def test_a_depth_stream_that_stops_is_neither_offset_nor_lag():
    pairer = StampPairer(slop=0.05, queue_size=3)
    notices = []
    for i in range(10):
        t = 10.0 + 0.1 * i
        notices += add(pairer, 'image', t, i).notices
        if i < 2:
            notices += add(pairer, 'depth', t, i).notices
    assert notices == [] and pairer.unpaired['image'] > 0


def test_time_jumping_back_restarts_pairing():
    pairer = StampPairer(slop=0.05, queue_size=10)
    add(pairer, 'image', 50.0, 'a')
    assert add(pairer, 'depth', 50.0, 'a').pair
    outcome = add(pairer, 'image', 2.0, 'b')        # a bag looped
    assert [n.kind for n in outcome.notices] == ['stamp_backwards']
    assert 'image stamp 2.000 is older than the previous image 50.000' in outcome.notices[0].text
    outcome = add(pairer, 'depth', 2.0, 'b')        # the depth follows: pairs, no second notice
    assert outcome.pair.image == 'b' and not outcome.notices
    for t in (2.1, 2.2):                            # and time goes on from there
        assert not add(pairer, 'image', t, t).notices and add(pairer, 'depth', t, t).pair.image == t


def test_queue_overflow_counts_unpaired():
    pairer = StampPairer(slop=0.05, queue_size=2)
    for i in range(5):
        add(pairer, 'image', float(i), i)
    assert pairer.unpaired['image'] == 3 and len(pairer.queues['image']) == 2


def test_latest_slot_worker_drops_stale_and_stops():
    slot = LatestSlot()
    handled, gate = [], threading.Event()

    def handle(item):
        gate.wait(5)
        handled.append(item)
    worker = Worker('test', slot, handle)
    worker.start()
    slot.put(1)
    while not worker.busy:
        time.sleep(0.01)
    slot.put(2)
    slot.put(3)                                    # replaces 2, still waiting
    assert slot.dropped == 1
    assert not worker.stop(0.2)                    # busy with 1: not finished within 0.2 s
    gate.set()
    worker.thread.join(5)
    assert handled == [1] and not worker.thread.is_alive()   # closed: 3 is never handled
    assert slot.take() is None and slot.wait_closed(0)


TOPICS = {'image': '/camera/image', 'depth': '/camera/depth', 'camera_info': '/camera/camera_info'}


def test_worker_nice_lowers_only_its_own_thread():
    import os
    base = os.getpriority(os.PRIO_PROCESS, 0)
    seen = []
    worker = Worker('test', LatestSlot(), lambda item: seen.append(
        os.getpriority(os.PRIO_PROCESS, threading.get_native_id())), nice=3)
    worker.start()
    worker.slot.put(1)
    while not seen:
        time.sleep(0.01)
    worker.stop(1)
    assert seen == [min(base + 3, 19)] and os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == base


def test_health_rate_decays_and_stall_warns():
    now = [100.0]
    health = Health({'image': '/camera/image', 'depth': '/camera/depth'}, window=10.0, stall_timeout=5.0,
                    clock=lambda: now[0])
    for _ in range(20):
        now[0] += 0.5
        health.on_input('image', 0.01)
        health.on_input('depth', 0.03)
        health.on_processed(0.2)
    report = health.report(dropped_stale=3, unpaired={'image': 0, 'depth': 0})
    assert report.level == OK and float(report.values['rate_hz']) == pytest.approx(2.0)
    assert report.values['latency_p50_s'] == '0.200' and report.values['dropped_stale'] == '3'
    assert report.values['input_delay_p95_s'] == '0.030'
    now[0] += 11                                   # nothing for longer than the window
    report = health.report(3, {'image': 0, 'depth': 0})
    assert report.values['rate_hz'] == '0.000' and report.values['latency_p50_s'] == 'nan'
    assert report.level == OK                      # no inputs either: idle, not stalled
    for _ in range(14):                            # images keep coming, nothing is processed
        now[0] += 0.5
        health.on_input('image')
        health.on_input('depth')
    report = health.report(3, {'image': 14, 'depth': 0})
    assert report.level == WARN
    assert report.message == 'inputs arrive but nothing processed for 6.5 s (14 images without a depth)'
    assert report.values['unpaired_image'] == '14' and report.values['received_image'] == '34'


def test_health_names_silent_inputs_with_their_topics():
    """Nothing arrives (topics mis-remapped): WARN after stall_timeout naming every silent input's
    topic and its publishers; received_* are there from the start."""
    now = [0.0]
    health = Health(TOPICS, stall_timeout=5.0, clock=lambda: now[0])
    report = health.report(0, {}, {'image': 0, 'depth': 0, 'camera_info': 0})
    assert report.level == OK and report.values['received_image'] == '0'
    assert report.values['received_camera_info'] == '0'
    now[0] = 5.5
    report = health.report(0, {}, {'image': 0, 'depth': 1, 'camera_info': 0})
    assert report.level == WARN
    assert report.message == ('waiting for image on /camera/image (5.5 s since start, 0 publishers), '
                              'depth on /camera/depth (5.5 s since start, 1 publisher), camera_info on '
                              '/camera/camera_info (5.5 s since start, 0 publishers): check the topic '
                              'names and remappings, and that the QoS matches the publishers (input_qos)')
    for kind in TOPICS:
        health.on_input(kind)
    assert health.report(0, {}).level == OK
    now[0] = 20.0                                  # all stopped: idle
    assert health.report(0, {}).level == OK
    health.on_input('image')                       # images again, but the depth stopped: named
    health.on_input('camera_info')
    report = health.report(0, {})
    assert report.level == WARN and report.message.startswith(
        'waiting for depth on /camera/depth (14.5 s since the last one): check')


def test_camera_info_is_overdue_only_stall_timeout_after_the_first_frame():
    now = [0.0]
    health = Health(TOPICS, stall_timeout=5.0, clock=lambda: now[0])
    now[0] = 100.0                                 # the node waited long before the camera started
    health.on_input('image')
    assert not health.camera_info_overdue()
    now[0] = 104.0
    assert not health.camera_info_overdue()
    now[0] = 105.5
    assert health.camera_info_overdue()
    health.on_input('camera_info')
    assert not health.camera_info_overdue()


def test_health_errors_warn_within_the_window():
    now = [0.0]
    health = Health({}, window=10.0, stall_timeout=5.0, clock=lambda: now[0])
    assert health.on_error('encoding') == 1
    assert health.report(0, {}).level == WARN
    now[0] += 11
    report = health.report(0, {})
    assert report.level == OK and report.values['error_encoding'] == '1'


def test_parameter_checks():
    assert check('slop', 0.05) is None
    assert check('slop', 0.0) == 'expected >= 1e-06, got 0.0'
    assert check('diagnostics_period', 1e-9) == 'expected >= 0.05, got 1e-09'
    assert check('queue_size', 0) == 'expected >= 1, got 0'
    assert check('input_qos', 'fast').startswith('expected one of reliable, best_effort')
    assert check('cam_from_grid', [1.0] * 3) == 'expected 16 finite numbers, got [1.0, 1.0, 1.0]'
    assert check('cam_from_grid', []) is None
    with pytest.raises(ValueError, match='last row must be 0 0 0 1'):
        pose_parameter([1.0] * 16, np.eye(4))
    scaled = (np.diag([1.1, 1.1, 1.1, 1.0])).ravel().tolist()
    assert check('cam_from_grid', scaled).startswith('its 3x3 part is not a rotation (RᵀR − I up to 0.21')
    assert class_filter_ids(['', 'road'], ('empty', 'car', 'road')).tolist() == [2]
    assert class_filter_ids([], ('empty', 'car')) is None
    assert type_mismatch('slop', 4, 'fast') == "parameter slop: expected double, got string 'fast'"
    assert type_mismatch('slop', 2, -5) == 'parameter slop: expected double, got integer -5 (write -5.0)'
    assert unknown(['slop', 'use_sim_time', 'qos_overrides./x.reliability', 'slope']) == ['slope']
    assert check('grid_frame', 'robot1/base_link') is None
    for bad in ('', '/map', 'base link', 'map\n'):
        assert check('grid_frame', bad).startswith('expected a frame id'), bad
    assert check('map_frame', '') is None and check('map_frame', 'odom') is None   # empty: no map
    assert check('map_frame', '/odom').startswith('expected a frame id')
    assert check('grid_pose', [0.0] * 16) == 'last row must be 0 0 0 1, got [0.0, 0.0, 0.0, 0.0]'
    read_only = {name for name, spec in PARAMETERS.items() if spec.read_only}
    assert read_only == {'checkpoint', 'preset', 'backend', 'device', 'allow_cpu_fallback', 'precision',
                         'fit', 'image_transport', 'depth_input', 'input_qos', 'queue_size', 'use_tf',
                         'map_frame', 'map_file', 'map_change_after'}


def code_kinds() -> set:
    """Every problem kind the code can report: MessageError('kind', ...), Notice('kind', ...),
    _warn('kind', ...) in ssc_ros, and the frame warnings ssc_core's predictor gives."""
    import re
    from pathlib import Path
    root = Path(__file__).resolve().parents[1]
    patterns = [r"MessageError\(\s*'(\w+)'", r"Notice\(\s*'(\w+)'", r"_warn\(\s*'(\w+)'",
                r"TransformError\(\s*'(\w+)'", r"warnings\['(\w+)'\]\s*="]
    files = [*sorted((root / 'ssc_ros').glob('*.py')), root / 'ssc_core' / 'frame_inputs.py',
             root / 'ssc_core' / 'predictor.py']
    return {kind for path in files for pattern in patterns for kind in re.findall(pattern, path.read_text())}


def test_every_problem_kind_is_in_the_table_and_the_readme():
    """ssc_ros.kinds.KINDS lists every kind the code reports, and README's table lists KINDS."""
    import re
    from pathlib import Path

    from ssc_ros.kinds import KINDS
    found = code_kinds()
    assert {'no_camera_info', 'size_mismatch', 'depth_too_far', 'stamp_backwards', 'input_lag',
            'no_depth_in_grid', 'small_view', 'encoding', 'tf_timeout', 'map_refused'} <= found  # each source
    assert found - set(KINDS) == set(), 'kinds missing in ssc_ros/kinds.py'
    readme = (Path(__file__).resolve().parents[1] / 'README.md').read_text()
    table = readme[readme.index('| kind | when | frame |'):]
    table = table[:table.index('\n\n')]
    rows = re.findall(r'^\| `(\w+)` \|', table, re.MULTILINE)
    assert sorted(rows) == sorted(KINDS), 'README warning-kind table differs from ssc_ros/kinds.py'
