"""Pictures of predictions a person can read: 3-D voxel views, camera frustum and image, legend."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .labels import class_colors
from .outputs import occupied_voxels


def voxel_view(labels: np.ndarray, colors: np.ndarray, voxel_size: float, origin,
               size=(640, 480), azimuth: float = -150.0, elevation: float = 35.0,
               camera: tuple | None = None) -> np.ndarray:
    """An oblique 3-D picture of a (X, Y, Z) label grid: each surface voxel a shaded square.

    Args:
        colors: (C, 3) RGB. voxel_size, origin: metres, grid frame.
        azimuth, elevation: viewing direction in degrees (the default looks from behind-left).
        camera: optional (K, cam_from_grid, (W, H)) to draw the camera frustum.
    Returns:
        (H, W, 3) uint8.
    """
    width, height = size
    points, classes = occupied_voxels(labels, voxel_size, origin, surface_only=True)
    idx = np.floor((points - np.asarray(origin, np.float32)) / voxel_size).astype(np.int64)
    az, el = np.radians(azimuth), np.radians(elevation)
    forward = np.array([np.cos(el) * np.cos(az), np.cos(el) * np.sin(az), -np.sin(el)])
    right = np.array([-np.sin(az), np.cos(az), 0.0])
    up = np.cross(right, forward)
    extent = np.asarray(origin) + np.array(labels.shape) * voxel_size
    corners = np.array([[x, y, z] for x in (origin[0], extent[0]) for y in (origin[1], extent[1])
                        for z in (origin[2], extent[2])])
    sx, sy = corners @ right, -(corners @ up)
    scale = 0.95 * min(width / np.ptp(sx), height / np.ptp(sy))
    cx, cy = (sx.max() + sx.min()) / 2, (sy.max() + sy.min()) / 2

    def to_screen(p):
        return (p @ right - cx) * scale + width / 2, (-(p @ up) - cy) * scale + height / 2

    image = np.full((height, width, 3), 255, np.uint8)
    if len(idx):
        u, v = to_screen(points)
        depth = points @ forward
        half = max(1, int(np.ceil(voxel_size * scale * 0.6)))
        offsets = np.arange(-half, half + 1)
        du, dv = np.meshgrid(offsets, offsets)
        pu = (np.round(u)[:, None] + du.ravel()).astype(np.int64).ravel()
        pv = (np.round(v)[:, None] + dv.ravel()).astype(np.int64).ravel()
        owner = np.repeat(np.arange(len(idx)), du.size)
        keep = (pu >= 0) & (pu < width) & (pv >= 0) & (pv < height)
        pixel = pv[keep] * width + pu[keep]
        owner = owner[keep]
        order = np.lexsort((depth[owner], pixel))
        first = np.unique(pixel[order], return_index=True)[1]
        winners = owner[order][first]
        heights = idx[winners, 2] / max(labels.shape[2] - 1, 1)
        shade = 0.55 + 0.45 * heights
        cls = classes[winners]
        image.reshape(-1, 3)[pixel[order][first]] = (colors[cls] * shade[:, None]).astype(np.uint8)
    picture = Image.fromarray(image)
    if camera is not None:
        K, cam_from_grid, (img_w, img_h) = camera
        grid_from_cam = np.linalg.inv(np.asarray(cam_from_grid, np.float64))
        rays = np.linalg.inv(K) @ np.array([[0, 0, 1], [img_w, 0, 1], [img_w, img_h, 1], [0, img_h, 1]]).T
        far = (grid_from_cam[:3, :3] @ (rays * 12.0)).T + grid_from_cam[:3, 3]
        apex = to_screen(grid_from_cam[:3, 3])
        ends = [to_screen(p) for p in far]
        draw = ImageDraw.Draw(picture)
        for end in ends:
            draw.line([apex, end], fill=(20, 20, 20), width=2)
        draw.line([*ends, ends[0]], fill=(20, 20, 20), width=2)
    return np.asarray(picture)


def legend(class_names, colors, present) -> Image.Image:
    """A column of colour swatches with class names."""
    font = ImageFont.load_default()
    row = 16
    picture = Image.new('RGB', (170, row * len(present) + 8), (255, 255, 255))
    draw = ImageDraw.Draw(picture)
    for i, c in enumerate(present):
        y = 4 + i * row
        draw.rectangle([6, y, 18, y + 11], fill=tuple(int(v) for v in colors[c]), outline=(0, 0, 0))
        draw.text((24, y), class_names[c], fill=(0, 0, 0), font=font)
    return picture


def render_scene(path, panels: dict[str, np.ndarray], class_names, voxel_size: float, origin,
                 image: np.ndarray | None = None, camera: tuple | None = None,
                 title: str = '') -> Path:
    """Write a PNG: 3-D views of one or more label grids side by side (e.g. prediction and
    ground truth) with the camera frustum, the camera image above, and a legend."""
    colors = class_colors(class_names)
    font = ImageFont.load_default()
    views = [Image.fromarray(voxel_view(labels, colors, voxel_size, origin, camera=camera))
             for labels in panels.values()]
    present = sorted({int(c) for labels in panels.values() for c in np.unique(labels)
                      if 0 < c < len(class_names)})
    key = legend(class_names, colors, present)
    width = sum(v.width for v in views) + key.width
    cam = None
    if image is not None:
        cam = np.asarray(image)
        cam = Image.fromarray((cam * 255).clip(0, 255).astype(np.uint8) if cam.dtype != np.uint8 else cam)
        cam = cam.resize((width, round(cam.height * width / cam.width)))
    top = 20 + (cam.height if cam else 0)
    canvas = Image.new('RGB', (width, top + 16 + max(views[0].height, key.height)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill=(0, 0, 0), font=font)
    if cam:
        canvas.paste(cam, (0, 20))
    x = 0
    for name, view in zip(panels, views, strict=True):
        draw.text((x + 4, top + 2), name, fill=(0, 0, 0), font=font)
        canvas.paste(view, (x, top + 16))
        x += view.width
    canvas.paste(key, (x, top + 16))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path


def top_view(voxels: np.ndarray, labels: np.ndarray, colors: np.ndarray, pixels_per_voxel: int = 2
             ) -> np.ndarray:
    """A map seen from above: (N, 3) integer voxel coordinates (z up) and their classes (N,) →
    (H, W, 3) uint8, x to the right and y up. Each column shows the class of its highest occupied
    voxel, darker the lower it is; columns known to be empty are light grey, unknown ones white."""
    if not len(voxels):
        return np.full((pixels_per_voxel, pixels_per_voxel, 3), 255, np.uint8)
    lo = voxels.min(0)
    x, y, z = (voxels - lo).T
    width, height = int(x.max()) + 1, int(y.max()) + 1
    image = np.full((height, width, 3), 255, np.uint8)
    image[height - 1 - y, x] = 225                                  # known
    occupied = labels != 0
    order = np.argsort(z[occupied], kind='stable')                  # the highest written last
    ox, oy, oz, oc = x[occupied][order], y[occupied][order], z[occupied][order], labels[occupied][order]
    shade = 0.45 + 0.55 * oz / max(int(z.max()), 1)
    image[height - 1 - oy, ox] = (colors[oc] * shade[:, None]).astype(np.uint8)
    return image.repeat(pixels_per_voxel, 0).repeat(pixels_per_voxel, 1)


def render_top_view(path, voxels: np.ndarray, labels: np.ndarray, class_names, voxel_size: float,
                    title: str = '') -> Path:
    """Write a PNG of :func:`top_view` with a legend and a scale bar of 10 m."""
    colors = class_colors(class_names)
    span = int(np.ptp(voxels[:, :2], 0).max()) + 1 if len(voxels) else 1
    scale = int(np.clip(1200 // span, 1, 4))                      # pixels per voxel
    view = Image.fromarray(top_view(voxels, labels, colors, scale))
    present = sorted({int(c) for c in np.unique(labels) if 0 < c < len(class_names)})
    key = legend(class_names, colors, present)
    canvas = Image.new('RGB', (view.width + key.width, 36 + max(view.height, key.height)), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    font = ImageFont.load_default()
    draw.text((4, 4), title, fill=(0, 0, 0), font=font)
    bar = round(10 / voxel_size * scale)
    draw.line([(4, 28), (4 + bar, 28)], fill=(0, 0, 0), width=3)
    draw.text((8 + bar, 21), '10 m', fill=(0, 0, 0), font=font)
    canvas.paste(view, (0, 36))
    canvas.paste(key, (view.width, 36))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
