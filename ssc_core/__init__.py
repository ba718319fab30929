"""ssc_core: Symphonies semantic scene completion without ROS."""
__version__ = '0.1.0'
