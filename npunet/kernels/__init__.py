"""Numba kernels: plain loops that write into preallocated outputs, used by the fast backend.

Every kernel ``foo`` has a NumPy/loop reference twin ``foo_ref`` in the same module
(``maxpool_bwd``'s is ``maxpool_bwd_ref``; ``interp_fwd``'s ``interp_fwd_ref`` ...); tests compare
the two.  The ops a student reads are in ``npunet/backends/reference.py``.  Kernels are compiled
with ``cache=True`` so the compilation cost is paid once per machine.
Kernels are serial and release the GIL; ``util.split`` runs them over index ranges (channels,
planes, rows) on every core; none uses Numba's ``parallel=True``.
"""
from .conv import im2col, col2im, im2col_wide, col2im_wide, im2col_ref, col2im_ref, im2col_wide_ref, col2im_wide_ref
from .conv import upconv_shuffle, upconv_unshuffle, upconv_shuffle_ref, upconv_unshuffle_ref
from .pool import (maxpool_fwd, maxpool2x2_fwd, maxpool_bwd, maxpool_fwd_ref, maxpool2x2_fwd_ref, maxpool_bwd_ref,
                   pool_windows)
from .interp import interp_fwd, interp_bwd, interp_fwd_ref, interp_bwd_ref, interp_indices
from .norm import bn_stats, bn_stats_ref, bn_apply, bn_apply_ref, bn_backward, bn_backward_ref
from .util import all_finite, all_finite_ref
from .depthwise import depthwise_fwd, depthwise_bwd, depthwise_fwd_ref, depthwise_bwd_ref

from .label import label, label_ref, edt_sq, edt_sq_ref, two_nearest, two_nearest_ref  # noqa: E402

__all__ = [n for n in dir() if not n.startswith("_")]
