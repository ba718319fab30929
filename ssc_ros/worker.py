"""The latest-item mailbox and the daemon thread that works through it. No ROS.

The node's inference and marker threads are each a :class:`Worker` over a :class:`LatestSlot`:
a newer item replaces one still waiting (counted as dropped), so a producer faster than the
worker costs dropped items, never a growing queue.
"""
import os
import threading


class LatestSlot:
    """Holds at most one item; ``put`` replaces a waiting one, ``take`` blocks until one comes."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item = None
        self.closed = False
        self.dropped = 0

    def put(self, item) -> None:
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self):
        """The waiting item (waits for one); None once the slot is closed."""
        with self._cond:
            while self._item is None and not self.closed:
                self._cond.wait()
            if self.closed:
                return None
            item, self._item = self._item, None
            return item

    def close(self) -> None:
        """Wake every waiter; ``take`` returns None from now on."""
        with self._cond:
            self.closed = True
            self._cond.notify_all()

    def wait_closed(self, timeout: float) -> bool:
        """Sleep up to ``timeout`` s; True (at once) when the slot is closed."""
        with self._cond:
            return self._cond.wait_for(lambda: self.closed, timeout)


class Worker:
    """A daemon thread calling ``handle(item)`` for each item taken from ``slot``.

    ``handle`` must not raise (it is where errors are counted). A daemon thread, so that an item
    in progress (a long inference) can be abandoned at shutdown: see :meth:`stop`. ``nice`` > 0
    lowers the thread's CPU priority (Linux: per thread; threads it starts, such as OpenMP's
    workers, inherit it), so that the process's other threads win the CPU when it is short.
    """

    def __init__(self, name: str, slot: LatestSlot, handle, nice: int = 0):
        self.slot = slot
        self.handle = handle
        self.nice = nice
        self.busy = False
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        if self.nice:
            thread = threading.get_native_id()
            os.setpriority(os.PRIO_PROCESS, thread, os.getpriority(os.PRIO_PROCESS, thread) + self.nice)
        while (item := self.slot.take()) is not None:
            self.busy = True
            try:
                self.handle(item)
            finally:
                self.busy = False

    def stop(self, timeout: float) -> bool:
        """Close the slot and wait up to ``timeout`` s; False when the thread is still in an item."""
        self.slot.close()
        if self.thread.is_alive():
            self.thread.join(timeout)
        return not self.thread.is_alive()
