"""Pictures of predictions a person can read: camera image, bird's-eye view, legend."""
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .labels import class_colors


def bird_eye_view(labels: np.ndarray, colors: np.ndarray, fov_mask: np.ndarray | None = None,
                  scale: int = 2) -> np.ndarray:
    """Top-down picture of a (X, Y, Z) label grid: the highest non-empty voxel of each column.

    x (forward) points up, y (left) points left. Columns outside the camera view are dimmed.
    Returns (Y*scale... ) an RGB uint8 image of shape (X*scale, Y*scale, 3).
    """
    occupied = (labels != 0) & (labels != 255)
    top = labels.shape[2] - 1 - np.argmax(occupied[..., ::-1], axis=2)
    column = np.take_along_axis(labels, top[..., None], axis=2)[..., 0]
    column = np.where(occupied.any(2), column, 0)
    image = colors[np.clip(column, 0, len(colors) - 1)].astype(np.float32)
    image[column == 0] = 40
    if fov_mask is not None:
        image[~fov_mask.any(2)] *= 0.35
    image = image[::-1, ::-1]
    return np.repeat(np.repeat(image, scale, 0), scale, 1).astype(np.uint8)


def render_prediction(path, labels: np.ndarray, class_names, image: np.ndarray | None = None,
                      fov_mask: np.ndarray | None = None, title: str = '') -> Path:
    """Write a PNG: the camera image (if given) above the bird's-eye view and a class legend."""
    colors = class_colors(class_names)
    bev = Image.fromarray(bird_eye_view(labels, colors, fov_mask))
    font = ImageFont.load_default()
    present = [c for c in range(1, len(class_names)) if np.any(labels == c)]
    legend_w, row_h = 170, 16
    cam = None
    if image is not None:
        cam = np.asarray(image)
        cam = (cam * 255).clip(0, 255).astype(np.uint8) if cam.dtype != np.uint8 else cam
        cam = Image.fromarray(cam)
        cam = cam.resize((bev.width + legend_w, round(cam.height * (bev.width + legend_w) / cam.width)))
    top = 20 + (cam.height if cam else 0)
    canvas = Image.new('RGB', (bev.width + legend_w, top + max(bev.height, row_h * len(present) + 8)),
                       (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((4, 4), title, fill=(0, 0, 0), font=font)
    if cam:
        canvas.paste(cam, (0, 20))
    canvas.paste(bev, (0, top))
    draw.text((4, top + 4), 'bird\'s-eye view, forward = up', fill=(255, 255, 255), font=font)
    for i, c in enumerate(present):
        y = top + 4 + i * row_h
        draw.rectangle([bev.width + 6, y, bev.width + 18, y + 11], fill=tuple(int(v) for v in colors[c]),
                       outline=(0, 0, 0))
        share = 100.0 * np.mean(labels == c)
        draw.text((bev.width + 24, y), f'{class_names[c]} {share:.1f}%', fill=(0, 0, 0), font=font)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(path)
    return path
