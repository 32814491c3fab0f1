"""Data: the U-Net weight map, synthetic touching cells, the DSB 2018 nuclei image,
augmentation, batching and overlap-tile prediction."""
from .weightmap import weight_map

__all__ = ["weight_map"]
