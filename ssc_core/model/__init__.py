"""The Symphonies network in plain PyTorch."""
from .decoder import SymphoniesDecoder
from .image_encoder import BACKBONES, ImageEncoder, PixelDecoderConfig
from .symphonies import Symphonies

__all__ = ['BACKBONES', 'ImageEncoder', 'PixelDecoderConfig', 'Symphonies', 'SymphoniesDecoder']
