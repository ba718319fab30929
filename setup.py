from glob import glob

from setuptools import find_packages, setup

PACKAGE = 'ssc_ros'

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
    package_data={'ssc_core': ['configs/*.yaml', 'configs/*/*.yaml', 'weights/*.safetensors']},
    install_requires=['setuptools'],
    zip_safe=True,
    entry_points={
        'console_scripts': [
            'ssc_node = ssc_ros.node:main',
            'ssc_bag = ssc_ros.bag:main',
            'ssc_demo = ssc_core.tools.demo:main',
            'ssc_bench = ssc_core.tools.bench:main',
            'ssc_convert = ssc_core.tools.convert:main',
            'ssc_train = ssc_core.tools.train:main',
            'ssc_evaluate = ssc_core.tools.evaluate:main',
            'ssc_submit = ssc_core.tools.submit:main',
            'ssc_infer = ssc_core.tools.infer:main',
            'ssc_render = ssc_core.tools.render:main',
            'ssc_prepare_labels = ssc_core.tools.prepare_labels:main',
            'ssc_make_synthetic = ssc_core.tools.make_synthetic:main',
        ],
    },
)
