"""Moved to npunet/geometry.py (a neutral module the kernels, backends and layers all import); re-exported here."""
from ..geometry import conv_out_size, conv_transpose_out_size, crop_offsets, interp_indices, pair, pool_windows, upsample_out_size  # noqa: F401,E501
