"""The Symphonies network in plain PyTorch."""
from .decoder import SymphoniesDecoder
from .image_encoder import ImageEncoder, PixelDecoderConfig
from .symphonies import Symphonies

__all__ = ['ImageEncoder', 'PixelDecoderConfig', 'Symphonies', 'SymphoniesDecoder']
