"""What the node has been doing, as /diagnostics tells it. No ROS; times in seconds (monotonic).

The rate and latencies cover the last ``window`` seconds, so they fall to 0 (and n/a) when frames
stop. The level is WARN when an input has sent nothing for ``stall_timeout`` seconds since start,
or image or depth stopped while other inputs arrive (named with their topics: a wrong remapping
shows at once), while inputs keep arriving but nothing has been
processed for ``stall_timeout`` seconds, or when errors happened within the window; OK otherwise.
"""
import collections
import time
from dataclasses import dataclass

import numpy as np

OK, WARN = 'OK', 'WARN'
UNPAIRED = {'image': 'images without a depth', 'depth': 'depths without an image'}


@dataclass
class Report:
    level: str          # OK or WARN
    message: str
    values: dict        # key -> text, as in diagnostic_msgs/KeyValue


class Health:
    """``inputs``: input name → the topic it is read from (resolved), as reports name them."""

    def __init__(self, inputs: dict[str, str], window: float = 10.0, stall_timeout: float = 5.0,
                 clock=time.monotonic):
        self.inputs = dict(inputs)
        self.window = window
        self.stall_timeout = stall_timeout
        self.clock = clock
        self.created = clock()
        self.received = collections.Counter(dict.fromkeys(inputs, 0))
        self.last_received = {}                  # input -> time of its last message
        self.first_frame_input = None            # time of the first image or depth
        self.errors = collections.Counter()
        self.processed = 0
        self.done = collections.deque()          # (time, latency) of recent processed frames
        self.delays = collections.deque()        # (time, delay) of recent inputs: arrival -> taken
        self.error_times = collections.deque()   # times of recent errors
        self.last_input = None                   # time of the last image or depth
        self.waiting_since = None                # first input after the last processed frame

    def on_input(self, kind: str, delay: float = 0.0) -> None:
        """A message of input ``kind`` taken by the node ``delay`` s after it arrived."""
        now = self.clock()
        self.received[kind] += 1
        self.last_received[kind] = now
        self.delays.append((now, delay))
        if kind in UNPAIRED:
            self.last_input = now
            if self.first_frame_input is None:
                self.first_frame_input = now
            if self.waiting_since is None:
                self.waiting_since = now

    def on_processed(self, latency: float) -> None:
        now = self.clock()
        self.processed += 1
        self.done.append((now, latency))
        self.waiting_since = None

    def on_error(self, kind: str) -> int:
        """Count an error of ``kind``; returns how many of that kind so far."""
        self.errors[kind] += 1
        self.error_times.append(self.clock())
        return self.errors[kind]

    def silent_for(self, kind: str) -> float:
        """Seconds since input ``kind`` last arrived (since start when it never did)."""
        return self.clock() - self.last_received.get(kind, self.created)

    def silent_inputs(self) -> list[str]:
        """Inputs silent for over ``stall_timeout``: never received, or (image and depth) stopped
        while another input still arrives. All inputs stopped is idle; a camera_info published
        once (as some drivers do) is enough."""
        quiet = {kind for kind in self.inputs if self.silent_for(kind) > self.stall_timeout}
        arriving = set(self.inputs) - quiet
        return [kind for kind in self.inputs if kind in quiet and (
            kind not in self.last_received or (kind != 'camera_info' and arriving))]

    def camera_info_overdue(self) -> bool:
        """True when images or depths have been arriving for ``stall_timeout`` s and camera_info
        has not: before that, a frame without camera_info is start-up, not a fault."""
        return (self.first_frame_input is not None and 'camera_info' not in self.last_received
                and self.clock() - self.first_frame_input > self.stall_timeout)

    def report(self, dropped_stale: int, unpaired: dict, publishers: dict | None = None) -> Report:
        """The current state; ``unpaired`` = inputs discarded without a partner, by input;
        ``publishers`` = publisher count per input, named in the report of a silent input."""
        now = self.clock()
        for queue in (self.done, self.delays):
            while queue and queue[0][0] < now - self.window:
                queue.popleft()
        while self.error_times and self.error_times[0] < now - self.window:
            self.error_times.popleft()
        span = min(self.window, max(now - self.created, 1e-9))
        rate = len(self.done) / span
        latencies = [latency for _, latency in self.done]
        p50, p95 = np.percentile(latencies, [50, 95]) if latencies else (float('nan'),) * 2
        delay = np.percentile([d for _, d in self.delays], 95) if self.delays else float('nan')
        values = {'rate_hz': f'{rate:.3f}', 'latency_p50_s': f'{p50:.3f}', 'latency_p95_s': f'{p95:.3f}',
                  'input_delay_p95_s': f'{delay:.3f}',
                  'processed': str(self.processed), 'dropped_stale': str(dropped_stale),
                  **{f'received_{k}': str(v) for k, v in sorted(self.received.items())},
                  **{f'unpaired_{k}': str(unpaired.get(k, 0)) for k in UNPAIRED},
                  **{f'error_{k}': str(v) for k, v in sorted(self.errors.items())}}
        silent = self.silent_inputs()
        if silent:
            return Report(WARN, self._silence(silent, publishers or {}), values)
        stalled_for = now - self.waiting_since if self.waiting_since is not None else 0.0
        arriving = self.last_input is not None and now - self.last_input <= self.stall_timeout
        if arriving and stalled_for > self.stall_timeout:
            why = [f'{n} {UNPAIRED[k]}' for k, n in unpaired.items() if n] + \
                  [f'{n} {k} errors' for k, n in sorted(self.errors.items())]
            return Report(WARN, f'inputs arrive but nothing processed for {stalled_for:.1f} s'
                          + (f' ({", ".join(why)})' if why else ''), values)
        if self.error_times:
            totals = ', '.join(f'{k} {n}' for k, n in sorted(self.errors.items()))
            return Report(WARN, f'{rate:.2f} Hz; errors in the last {self.window:g} s (so far: {totals})',
                          values)
        return Report(OK, f'{rate:.2f} Hz, {dropped_stale} stale frames dropped', values)

    def _silence(self, silent: list, publishers: dict) -> str:
        """'no image on /camera/image for 33.0 s (0 publishers), ...: ...' with what to check."""
        parts = []
        for kind in silent:
            count = publishers.get(kind)
            who = '' if count is None else f', {count} publisher{"" if count == 1 else "s"}'
            ever = 'since start' if kind not in self.last_received else 'since the last one'
            parts.append(f'{kind} on {self.inputs[kind]} ({self.silent_for(kind):.1f} s {ever}{who})')
        hint = 'check the topic names and remappings'
        if any(publishers.get(kind) for kind in silent):
            hint += ', and that the QoS matches the publishers (input_qos)'
        return f'waiting for {", ".join(parts)}: {hint}'
