"""Running the command-line tools as a user does: ``python -m ssc_core.tools.NAME ARGS``."""
import subprocess
import sys


def run_tool(name, *args, check=True) -> subprocess.CompletedProcess:
    """Run a tool; with ``check``, a non-zero exit fails the test with the tool's output."""
    out = subprocess.run([sys.executable, '-m', f'ssc_core.tools.{name}', *map(str, args)],
                         capture_output=True, text=True)
    if check and out.returncode:
        raise AssertionError(f'{name} failed ({out.returncode}):\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}')
    return out
