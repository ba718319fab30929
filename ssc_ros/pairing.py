"""Image ↔ depth pairing by stamp, with the reasons frames go unpaired. No ROS, no threads.

Each input is queued with its stamp and its arrival time (seconds; the middleware's reception
time, so that a node slow to take its messages does not shift them). On every arrival the newest
image with a depth within ``slop`` is paired with its closest depth; inputs older than the pair
can no longer pair and are discarded, counted as unpaired. When a queue fills up without a
partner while the newest depth and image stamps are further apart than ``slop``, three causes
are told apart:

* ``stamp_backwards``: one input's own stamps went back by more than ``slop`` (a bag looped, a
  driver restarted): pairing starts over.
* ``depth_too_far``: depths and images that *arrive together* carry stamps further apart than
  ``slop`` (say, depth stamped 1 s early, or a depth pipeline 1 s late), as the median over the
  newest messages: the offset is reported.
* ``input_lag``: the node took a message more than ``slop`` after it arrived, and its partners
  were discarded meanwhile (the node is behind, its CPU busy): the stamps are right and not blamed.

An input that merely stopped arriving is neither (the node's health names silent inputs).

An image merely overtaken by a newer pair lost its depth: counted only.
"""
import collections
from dataclasses import dataclass, field

import numpy as np

INPUTS = ('image', 'depth')
OFFSET_SAMPLES = 10
"""Newest messages per input whose median stamp - arrival is compared: an offset persists, while a
message the middleware received late (its threads starved of CPU) moves one sample only."""


@dataclass
class Notice:
    kind: str   # stamp_backwards, depth_too_far or input_lag
    text: str


@dataclass
class Pair:
    image: object
    depth: object
    stamp: float  # the image's


@dataclass
class Outcome:
    pair: Pair | None = None
    notices: list = field(default_factory=list)


class StampPairer:
    """Pairs images with depths by stamp; ``slop`` (s) may change between calls."""

    def __init__(self, slop: float, queue_size: int):
        self.slop = slop
        self.queue_size = queue_size
        self.queues = {name: collections.deque() for name in INPUTS}   # (stamp, msg), oldest first
        self.last = dict.fromkeys(INPUTS)                                # last stamp seen per input
        self.stamp_minus_arrival = {name: collections.deque(maxlen=OFFSET_SAMPLES) for name in INPUTS}
        self.unpaired = collections.Counter()                            # by input

    def add(self, kind: str, stamp: float, msg, arrival: float, taken: float) -> Outcome:
        """Queue ``msg`` of input ``kind`` ('image' or 'depth') stamped ``stamp`` that arrived at
        ``arrival`` and was taken by the node at ``taken`` (one clock for both, any origin); a pair
        when one is complete."""
        outcome = Outcome()
        last = self.last[kind]
        if last is not None and stamp < last - self.slop:
            outcome.notices.append(Notice('stamp_backwards', f'{kind} stamp {stamp:.3f} is older than the '
                                          f'previous {kind} {last:.3f}: time jumped back, pairing restarts'))
            for name in INPUTS:
                self.queues[name].clear()
                self.stamp_minus_arrival[name].clear()
                self.last[name] = None
            last = None
        if last is None or stamp >= last:
            self.last[kind] = stamp
            self.stamp_minus_arrival[kind].append(stamp - arrival)
        other = self.queues[INPUTS[1 - INPUTS.index(kind)]]
        if taken - arrival > self.slop and other and other[0][0] > stamp + self.slop:
            outcome.notices.append(Notice(
                'input_lag', f'{kind} taken {taken - arrival:.3f} s after it arrived, its partner already '
                f'discarded (queue_size {self.queue_size}): the node is behind its inputs (CPU busy)'))
        queue = self.queues[kind]
        queue.append((stamp, msg))
        if len(queue) > self.queue_size:
            self._discard(kind, 1, outcome, explain=True)
        outcome.pair = self._pair(outcome)
        return outcome

    def _pair(self, outcome: Outcome) -> Pair | None:
        images, depths = self.queues['image'], self.queues['depth']
        for i in range(len(images) - 1, -1, -1):
            stamp, image = images[i]
            j = self._closest_depth(stamp)
            if j is None or abs(depths[j][0] - stamp) > self.slop:
                continue
            depth = depths[j][1]
            self._discard('image', i, outcome)
            images.popleft()
            self._discard('depth', j, outcome)
            depths.popleft()
            return Pair(image, depth, stamp)
        return None

    def _closest_depth(self, stamp: float) -> int | None:
        depths = self.queues['depth']
        if not depths:
            return None
        return min(range(len(depths)), key=lambda j: abs(depths[j][0] - stamp))

    def _discard(self, kind: str, count: int, outcome: Outcome, explain: bool = False) -> None:
        """Drop the ``count`` oldest of ``kind`` as unpaired; ``explain``: a full queue reports an
        offset between the stamps of depths and images that arrive together."""
        for _ in range(count):
            self.queues[kind].popleft()
            self.unpaired[kind] += 1
        newest_image, newest_depth = self.last['image'], self.last['depth']
        if explain and newest_image is not None and newest_depth is not None:
            samples = self.stamp_minus_arrival
            offset = float(np.median(samples['depth']) - np.median(samples['image']))
            if abs(newest_depth - newest_image) > self.slop and abs(offset) > self.slop:
                outcome.notices.append(Notice(
                    'depth_too_far', f'no depth within slop {self.slop:g} s of the images: depths arrive '
                    f'with stamps {abs(offset):.3f} s {"behind" if offset < 0 else "ahead of"} the images '
                    f'arriving with them ({kind} discarded unpaired; check the stamps, or raise slop; a '
                    f'depth pipeline that late needs queue_size > {self.queue_size})'))
