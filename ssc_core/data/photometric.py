"""Photometric training augmentation: what a real camera does to a uint8 image.

Contrast and brightness (exposure, gain), per-pixel sensor noise, then JPEG compression (image
transport, dash cams), each drawn at random per sample. The geometry is left alone, so depth,
calibration and targets stay valid. Draws come from a seed the sampler hands out
(:class:`~ssc_core.training.data.EpochSampler`), so a resumed run sees the same images.
"""
import io
from dataclasses import dataclass

import numpy as np
from PIL import Image


@dataclass(frozen=True)
class Photometric:
    """Random camera-like changes of an (H, W, 3) uint8 RGB image.

    Args:
        brightness: largest additive offset, as a fraction of the 8-bit range (0 = off).
        contrast: the contrast factor is drawn from [1 - contrast, 1 + contrast] (0 = off).
        noise: largest standard deviation of Gaussian sensor noise, in 8-bit levels (0 = off).
        jpeg_quality: (lowest, highest) JPEG quality drawn from, within 1..100.
        jpeg_probability: chance that a sample is JPEG-compressed (0 = never).
    """
    brightness: float = 0.15
    contrast: float = 0.2
    noise: float = 4.0
    jpeg_quality: tuple[int, int] = (40, 95)
    jpeg_probability: float = 0.5

    def __post_init__(self):
        for name, top in (('brightness', 1.0), ('contrast', 1.0), ('noise', 64.0),
                          ('jpeg_probability', 1.0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
                raise ValueError(f'photometric.{name}: expected a number in [0, {top:g}], got {value!r}')
        quality = self.jpeg_quality
        if (not isinstance(quality, list | tuple) or len(quality) != 2
                or not all(isinstance(q, int) and not isinstance(q, bool) and 1 <= q <= 100 for q in quality)
                or quality[0] > quality[1]):
            raise ValueError(f'photometric.jpeg_quality: expected [lowest, highest] integers in '
                             f'1..100, lowest first, got {quality!r}')
        object.__setattr__(self, 'jpeg_quality', tuple(quality))

    def __call__(self, image: np.ndarray, seed: int) -> np.ndarray:
        """(H, W, 3) uint8 → (H, W, 3) uint8, the same for the same seed."""
        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f'photometric: expected an (H, W, 3) uint8 image, got {image.shape} '
                             f'{image.dtype}')
        rng = np.random.default_rng(seed)
        contrast = rng.uniform(1 - self.contrast, 1 + self.contrast)
        offset = rng.uniform(-self.brightness, self.brightness) * 255
        sigma = rng.uniform(0, self.noise)
        compress = rng.random() < self.jpeg_probability
        quality = int(rng.integers(self.jpeg_quality[0], self.jpeg_quality[1] + 1))
        out = image.astype(np.float32)
        mean = out.mean()
        out = (out - mean) * contrast + mean + offset
        if sigma > 0:
            out += rng.standard_normal(out.shape, np.float32) * sigma
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        if compress:
            buffer = io.BytesIO()
            Image.fromarray(out).save(buffer, format='JPEG', quality=quality)
            out = np.asarray(Image.open(buffer).convert('RGB'))
        return out
