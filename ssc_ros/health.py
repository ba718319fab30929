"""What the node has been doing, as /diagnostics tells it. No ROS; times in seconds (monotonic).

The rate and latencies cover the last ``window`` seconds, so they fall to 0 (and n/a) when frames
stop. The level is WARN while inputs keep arriving but nothing has been processed for
``stall_timeout`` seconds, or when errors happened within the window; OK otherwise.
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
    def __init__(self, window: float = 10.0, stall_timeout: float = 5.0, clock=time.monotonic):
        self.window = window
        self.stall_timeout = stall_timeout
        self.clock = clock
        self.created = clock()
        self.received = collections.Counter()
        self.errors = collections.Counter()
        self.processed = 0
        self.done = collections.deque()          # (time, latency) of recent processed frames
        self.error_times = collections.deque()   # times of recent errors
        self.last_input = None                   # time of the last image or depth
        self.waiting_since = None                # first input after the last processed frame

    def on_input(self, kind: str) -> None:
        now = self.clock()
        self.received[kind] += 1
        if kind in ('image', 'depth'):
            self.last_input = now
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

    def report(self, dropped_stale: int, unpaired: dict) -> Report:
        """The current state; ``unpaired`` = inputs discarded without a partner, by input."""
        now = self.clock()
        while self.done and self.done[0][0] < now - self.window:
            self.done.popleft()
        while self.error_times and self.error_times[0] < now - self.window:
            self.error_times.popleft()
        span = min(self.window, max(now - self.created, 1e-9))
        rate = len(self.done) / span
        latencies = [latency for _, latency in self.done]
        p50, p95 = np.percentile(latencies, [50, 95]) if latencies else (float('nan'),) * 2
        values = {'rate_hz': f'{rate:.3f}', 'latency_p50_s': f'{p50:.3f}', 'latency_p95_s': f'{p95:.3f}',
                  'processed': str(self.processed), 'dropped_stale': str(dropped_stale),
                  **{f'received_{k}': str(v) for k, v in sorted(self.received.items())},
                  **{f'unpaired_{k}': str(unpaired.get(k, 0)) for k in ('image', 'depth')},
                  **{f'error_{k}': str(v) for k, v in sorted(self.errors.items())}}
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
