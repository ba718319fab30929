"""Packaging: a valid ament_python package, consistent versions, no ROS in ssc_core."""
import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_colcon_sees_an_ament_python_package():
    colcon = shutil.which('colcon') or str(Path(sys.executable).with_name('colcon'))
    out = subprocess.run([colcon, 'list'], cwd=REPO, capture_output=True, text=True, check=True)
    assert re.search(r'^ssc_ros\s+\.\s+\(ros\.ament_python\)$', out.stdout, re.M), out.stdout + out.stderr


def test_versions_agree():
    xml = (REPO / 'package.xml').read_text()
    setup = (REPO / 'setup.py').read_text()
    xml_version = re.search(r'<version>([^<]+)</version>', xml).group(1)
    assert f"version='{xml_version}'" in setup
    import ssc_core
    assert ssc_core.__version__ == xml_version


def test_ssc_core_imports_no_ros():
    ros_modules = ('rclpy', 'sensor_msgs', 'std_msgs', 'visualization_msgs', 'nav_msgs', 'launch',
                   'cv_bridge', 'ssc_ros')
    for path in (REPO / 'ssc_core').rglob('*.py'):
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or '']
            for name in names:
                assert name.split('.')[0] not in ros_modules, f'{path}: imports {name}'
