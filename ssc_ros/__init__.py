"""ssc_ros: the ROS 2 side of semantic scene completion (node, bag tools, launch)."""
