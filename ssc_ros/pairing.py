"""Image ↔ depth pairing by stamp, with the reasons frames go unpaired. No ROS, no threads.

Each input is queued with its stamp (seconds). On every arrival the newest image with a depth
within ``slop`` is paired with its closest depth; inputs older than the pair can no longer pair
and are discarded, counted as unpaired. Two problems are told apart:

* ``stamp_backwards``: one input's own stamps went back by more than ``slop`` (a bag looped, a
  driver restarted): pairing starts over.
* ``depth_too_far``: both inputs move forward, but a queue fills up without a partner while the
  newest depth and image stamps are further apart than ``slop`` (say, depth stamped 1 s early):
  the offset is reported. An image merely overtaken by a newer pair lost its depth: counted only.
"""
import collections
from dataclasses import dataclass, field

INPUTS = ('image', 'depth')


@dataclass
class Notice:
    kind: str   # stamp_backwards or depth_too_far
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
        self.unpaired = collections.Counter()                            # by input

    def add(self, kind: str, stamp: float, msg) -> Outcome:
        """Queue ``msg`` of input ``kind`` ('image' or 'depth'); a pair when one is complete."""
        outcome = Outcome()
        last = self.last[kind]
        if last is not None and stamp < last - self.slop:
            outcome.notices.append(Notice('stamp_backwards', f'{kind} stamp {stamp:.3f} is older than the '
                                          f'previous {kind} {last:.3f}: time jumped back, pairing restarts'))
            for name in INPUTS:
                self.queues[name].clear()
                self.last[name] = None
            last = None
        self.last[kind] = stamp if last is None else max(stamp, last)
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
        """Drop the ``count`` oldest of ``kind`` as unpaired; ``explain``: a full queue says how far
        apart the newest depth and image stamps are when that is more than slop."""
        for _ in range(count):
            self.queues[kind].popleft()
            self.unpaired[kind] += 1
        newest_image, newest_depth = self.last['image'], self.last['depth']
        if explain and newest_image is not None and newest_depth is not None:
            offset = newest_depth - newest_image
            if abs(offset) > self.slop:
                outcome.notices.append(Notice(
                    'depth_too_far', f'no depth within slop {self.slop:g} s of the images: depth stamps run '
                    f'{abs(offset):.3f} s {"behind" if offset < 0 else "ahead of"} image stamps ({kind} '
                    'discarded unpaired; check the stamps, or raise slop)'))
