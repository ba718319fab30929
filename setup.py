from glob import glob
from pathlib import Path

from setuptools import find_packages, setup

PACKAGE = 'ssc_ros'
# every command of ssc_core/tools (python -m ssc_core.tools.NAME) is also the console script ssc_NAME
TOOLS = [f'ssc_{p.stem} = ssc_core.tools.{p.stem}:main'
         for p in sorted((Path(__file__).parent / 'ssc_core' / 'tools').glob('*.py'))
         if p.stem not in ('__init__', 'common')]

setup(
    name=PACKAGE,
    version='0.1.0',
    description='Camera-based 3D semantic scene completion (Symphonies) for ROS 2',
    license='Apache-2.0',
    python_requires='>=3.10',
    packages=find_packages(include=['ssc_core', 'ssc_core.*', 'ssc_ros', 'ssc_ros.*']),
    data_files=[
        ('share/ament_index/resource_index/packages', [f'resource/{PACKAGE}']),
        (f'share/{PACKAGE}', ['package.xml']),
        (f'share/{PACKAGE}/launch', glob('launch/*.py')),
        (f'share/{PACKAGE}/config', glob('config/*')),
    ],
    package_data={'ssc_core': ['configs/*.yaml', 'configs/*/*.yaml', 'weights/*.safetensors', 'mapping/*.c']},
    install_requires=['setuptools'],
    zip_safe=True,
    entry_points={
        'console_scripts': [
            'ssc_node = ssc_ros.node:main',
            'ssc_bag = ssc_ros.bag:main',
            *TOOLS,
        ],
    },
)
