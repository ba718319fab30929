"""SIGINT and SIGTERM as a request to stop, for programs that wind down on their own.

rclpy's default handlers shut the context down from inside the signal and let a second Ctrl-C
raise ``KeyboardInterrupt`` wherever the program happens to be (``ros2 launch`` forwards one
SIGINT on top of the terminal's). Here the first SIGINT or SIGTERM sets an event and from then on
both are ignored, so that a repeated signal cannot interrupt the wind-down (Python restores the
default, fatal action of its own handlers while it finalizes). Initialise rclpy with
``signal_handler_options=SignalHandlerOptions.NO`` and poll the event.
"""
import signal
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def stop_on_signals() -> threading.Event:
    """Install handlers for SIGINT and SIGTERM that set the returned event (once; later ones are ignored)."""
    stop = threading.Event()

    def handle(signum, frame):
        for other in STOP_SIGNALS:
            signal.signal(other, signal.SIG_IGN)
        stop.set()

    for signum in STOP_SIGNALS:
        signal.signal(signum, handle)
    return stop
