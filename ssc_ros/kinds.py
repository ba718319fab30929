"""Every kind of problem the node counts in /diagnostics (``error_<kind>``) and logs, in one table.

Adding a kind is one line here and its row in README.md's table (``test_ros_pipeline`` checks
that the code, this table and the README agree).
"""

TF_OUTCOME = 'dropped (camera transform); not in the map (map transform)'

KINDS = {  # kind: (when, what becomes of the message or frame)
    # a message that cannot be read (ssc_ros.conversions)
    'encoding': ('image, depth or disparity encoding not supported', 'dropped'),
    'size': ('image of width or height 0', 'dropped'),
    'truncated': ('image data shorter than step × height, or step shorter than a row', 'dropped'),
    'decode': ('compressed image that does not decode', 'dropped'),
    'image_too_large': ('compressed image over 50 MP (read from its header)', 'dropped undecoded'),
    'bad_disparity': ('DisparityImage with a focal length or baseline ≤ 0 or not finite', 'dropped'),
    # a frame whose parts do not fit together (ssc_ros.camera_checks, ssc_ros.node)
    'no_camera_info': ('no camera_info yet, `stall_timeout` s after the first image or depth '
                       '(earlier: start-up, not counted)', 'dropped'),
    'camera_info_size': ('camera_info is for another size and the image is not a uniform resize of it '
                         '(a resize, as image_proc\'s, scales `K` and is used)', 'dropped'),
    'bad_camera_info': ('`K` unset, not finite, last row not (0, 0, 1), focal length outside 0.01–100 × '
                        'the image\'s longer side, fx/fy outside 1/4–4, principal point more than an '
                        'image away', 'dropped'),
    'image_too_small': ('a side under 32 pixels', 'dropped'),
    'size_mismatch': ('depth of another size than the image (depth must be registered to it)', 'dropped'),
    'distorted_image': ('camera_info has non-zero distortion: subscribe to the rectified image '
                        '(`image_rect`)', 'used'),
    'frame_id_mismatch': ('image, depth and camera_info frame ids differ (empty ones aside)', 'used'),
    # pairing by stamp (ssc_ros.pairing)
    'stamp_backwards': ('an input\'s stamps went back by more than `slop` (a looped bag, a restarted '
                        'driver)', 'pairing restarts'),
    'depth_too_far': ('depths and images arriving together carry stamps further apart than `slop`',
                      'unpaired, counted'),
    'input_lag': ('the node took an image or depth more than `slop` after it arrived, its partner '
                  'already discarded (the node is behind its inputs: CPU busy)', 'unpaired, counted'),
    # the prediction (ssc_core.predictor, ssc_core.frame_inputs)
    'no_depth_in_grid': ('no valid depth pixel inside the grid: predicted from the image alone', 'published'),
    'depth_in_millimetres': ('median depth above 250 m (millimetres sent as 32FC1 metres)', 'published'),
    'small_view': ('under 20 % of the grid in view, or the fit keeps under 90 % of what the camera sees',
                   'published'),
    'non_finite_output': ('the network computed NaN or inf logits (weights that load but compute '
                          'garbage)', 'dropped'),
    'bad_input': ('the predictor refused the frame (its message names the input)', 'dropped'),
    'inference_failed': ('the network raised an error', 'dropped'),
    'markers_failed': ('building or publishing the MarkerArray failed', 'markers not published'),
    # transforms from tf2 (ssc_ros.transforms): the camera's in grid_frame before inference, the
    # map's after it
    'tf_timeout': ('the transforms end before the image\'s stamp (older by more than `tf_tolerance`) '
                   'after waiting `tf_timeout` s: TF late or stopped', TF_OUTCOME),
    'tf_extrapolation': ('the image\'s stamp is before the transforms tf2 holds (older than its 10 s '
                         'cache, or before TF started)', TF_OUTCOME),
    'tf_unknown_frame': ('a frame tf2 has never heard of (a typo, a broadcaster not running), or an '
                         'image without frame_id', TF_OUTCOME),
    'tf_not_connected': ('both frames known, but in separate TF trees (a missing link)', TF_OUTCOME),
    # the semantic map (ssc_ros.live_map, ssc_core.mapping)
    'map_refused': ('the map refused the frame: a pose that moved faster than `map_max_speed` (a '
                    'relocalisation), a stamp earlier than the last frame\'s (a looped bag): call '
                    '~/reset_map', 'published, not in the map'),
    'map_failed': ('building or publishing the map\'s messages failed', 'map not published'),
}


def outcome(kind: str) -> str:
    """What becomes of a message or frame with a problem of ``kind`` (KINDS; unknown: dropped)."""
    return KINDS.get(kind, ('', 'dropped'))[1]
