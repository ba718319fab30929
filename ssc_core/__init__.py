"""ssc_core: Symphonies semantic scene completion without ROS."""
import os
import sys

__version__ = '0.1.0'

# ONNX Runtime's Linux wheels (1.29+) send usage telemetry to Microsoft (DNS, then HTTPS to
# mobile.events.data.microsoft.com, ~10 s after start) and keep a device id and an event cache
# under ~/.cache/Microsoft unless this variable is set when onnxruntime is first imported; the
# choice then holds for the process. Set here, before anything of ours imports it (an explicit
# value of the user's is kept).
ORT_TELEMETRY_VARIABLE = 'ORT_DISABLE_TELEMETRY'
ORT_IMPORTED_FIRST = 'onnxruntime' in sys.modules and ORT_TELEMETRY_VARIABLE not in os.environ
"""True when onnxruntime was imported before ssc_core without the variable: its telemetry is on."""
os.environ.setdefault(ORT_TELEMETRY_VARIABLE, '1')
