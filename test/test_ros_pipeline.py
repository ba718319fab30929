"""The node's bookkeeping without DDS: stamp pairing, the latest-item worker, health, parameter checks."""
import threading
import time

import numpy as np
import pytest

from ssc_ros.health import OK, WARN, Health
from ssc_ros.pairing import StampPairer
from ssc_ros.parameters import PARAMETERS, check, class_filter_ids, grid_pose, type_mismatch, unknown
from ssc_ros.worker import LatestSlot, Worker


def test_pairing_newest_image_with_closest_depth():
    pairer = StampPairer(slop=0.05, queue_size=10)
    assert pairer.add('image', 1.0, 'i1').pair is None
    assert pairer.add('image', 1.1, 'i2').pair is None
    outcome = pairer.add('depth', 1.09, 'd2')
    assert (outcome.pair.image, outcome.pair.depth, outcome.pair.stamp) == ('i2', 'd2', 1.1)
    assert pairer.unpaired == {'image': 1}             # i1 can no longer pair
    assert not outcome.notices                          # it lost its depth: no offset to report
    pairer.add('depth', 1.2, 'd3')
    assert pairer.add('image', 1.21, 'i3').pair.depth == 'd3'
    assert pairer.unpaired == {'image': 1}


def test_depth_too_far_is_not_time_jumping_back():
    """Depth stamped 1 s early: images go unpaired with the offset named, no restart."""
    pairer = StampPairer(slop=0.05, queue_size=3)
    notices = []
    for i in range(10):
        t = 10.0 + 0.1 * i
        notices += pairer.add('image', t, f'i{i}').notices + pairer.add('depth', t - 1.0, f'd{i}').notices
    kinds = {n.kind for n in notices}
    assert kinds == {'depth_too_far'}
    assert 'depth stamps run 1.100 s behind image stamps (image discarded unpaired' in notices[0].text
    assert pairer.unpaired['image'] == 7 and pairer.unpaired['depth'] == 7


def test_time_jumping_back_restarts_pairing():
    pairer = StampPairer(slop=0.05, queue_size=10)
    pairer.add('image', 50.0, 'a')
    assert pairer.add('depth', 50.0, 'a').pair
    outcome = pairer.add('image', 2.0, 'b')        # a bag looped
    assert [n.kind for n in outcome.notices] == ['stamp_backwards']
    assert 'image stamp 2.000 is older than the previous image 50.000' in outcome.notices[0].text
    outcome = pairer.add('depth', 2.0, 'b')        # the depth follows: pairs, no second notice
    assert outcome.pair.image == 'b' and not outcome.notices
    for t in (2.1, 2.2):                            # and time goes on from there
        assert not pairer.add('image', t, t).notices and pairer.add('depth', t, t).pair.image == t


def test_queue_overflow_counts_unpaired():
    pairer = StampPairer(slop=0.05, queue_size=2)
    for i in range(5):
        pairer.add('image', float(i), i)
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


def test_health_rate_decays_and_stall_warns():
    now = [100.0]
    health = Health(window=10.0, stall_timeout=5.0, clock=lambda: now[0])
    for _ in range(20):
        now[0] += 0.5
        health.on_input('image')
        health.on_input('depth')
        health.on_processed(0.2)
    report = health.report(dropped_stale=3, unpaired={'image': 0, 'depth': 0})
    assert report.level == OK and float(report.values['rate_hz']) == pytest.approx(2.0)
    assert report.values['latency_p50_s'] == '0.200' and report.values['dropped_stale'] == '3'
    now[0] += 11                                   # nothing for longer than the window
    report = health.report(3, {'image': 0, 'depth': 0})
    assert report.values['rate_hz'] == '0.000' and report.values['latency_p50_s'] == 'nan'
    assert report.level == OK                      # no inputs either: idle, not stalled
    for _ in range(14):                            # images keep coming, nothing is processed
        now[0] += 0.5
        health.on_input('image')
    report = health.report(3, {'image': 14, 'depth': 0})
    assert report.level == WARN
    assert report.message == 'inputs arrive but nothing processed for 6.5 s (14 images without a depth)'
    assert report.values['unpaired_image'] == '14' and report.values['received_image'] == '34'


def test_health_errors_warn_within_the_window():
    now = [0.0]
    health = Health(window=10.0, stall_timeout=5.0, clock=lambda: now[0])
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
        grid_pose([1.0] * 16, np.eye(4))
    scaled = (np.diag([1.1, 1.1, 1.1, 1.0])).ravel().tolist()
    assert check('cam_from_grid', scaled).startswith('its 3x3 part is not a rotation (RᵀR − I up to 0.21')
    assert class_filter_ids(['', 'road'], ('empty', 'car', 'road')).tolist() == [2]
    assert class_filter_ids([], ('empty', 'car')) is None
    assert type_mismatch('slop', 4, 'fast') == "parameter slop: expected double, got string 'fast'"
    assert type_mismatch('slop', 2, -5) == 'parameter slop: expected double, got integer -5 (write -5.0)'
    assert unknown(['slop', 'use_sim_time', 'qos_overrides./x.reliability', 'slope']) == ['slope']
    read_only = {name for name, spec in PARAMETERS.items() if spec.read_only}
    assert read_only == {'checkpoint', 'preset', 'backend', 'device', 'allow_cpu_fallback', 'precision',
                         'fit', 'image_transport', 'depth_input', 'input_qos', 'queue_size'}
