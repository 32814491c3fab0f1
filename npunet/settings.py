"""npunet's run-time settings, all in one object: ``npunet.settings.settings``.

    settings.backend         "fast" or "reference": whose op pairs the layers call    (npunet.set_backend, npunet.backend)
    settings.check_finite    the NaN/Inf scan: True, "every" or False                (npunet.nn.set_checks)
    settings.grad            False inside no_grad(): forwards keep no caches         (npunet.no_grad, inference_mode)
    settings.meta, .trace    shape-only passes and the list of leaf calls they record (npunet.nn.module.shape_only)
    settings.depth           how many module calls are running (0: the next one is the outermost)
    settings.fast            the fast backend's tuning knobs, a FastOptions          (npunet.fast_options)

Read it freely; change it through the functions named on the right, which restore what they changed.
Every field but ``fast`` belongs to the thread (a new thread starts from the defaults below), so that
a selection persists across notebook cells yet two threads can run different backends.  ``fast`` is one
object for the whole process: set it around a block, not from threads that run models at the same time.

This module imports nothing from npunet: nn, backends and the kernels all read it, none is read by it.
"""
import threading
from dataclasses import dataclass


@dataclass
class FastOptions:
    """The fast backend's tuning knobs (defaults in brackets).

    winograd [True]: 3x3 stride-1 float32 convolutions (groups 1) run as Winograd F(m x m, 3x3)
        (``kernels.winograd``) when the next two knobs allow; False: every such conv takes im2col.
    winograd_min_channels [8]: ... with at least this many input channels.  A 1-channel input layer
        would run its Winograd GEMMs with depth 1; im2col's one GEMM of depth 9 is 2.5x faster.
    winograd_min_tiles [64]: ... and at least this many 2x2 output tiles (N * ceil(H_out/2) *
        ceil(W_out/2)).  A 512-channel 8x8 map has 16: transforming its 16 x C_out x C_in weights
        costs more than the GEMMs save.
    winograd_tile [None]: the output tile m.  4 = F(4x4, 3x3): 36 GEMMs, transforms 2.25x the data;
        2 = F(2x2, 3x3): 16 GEMMs, 4x the data, smaller float32 error; None: chosen per layer by
        ``winograd_f4_min_tiles``.
    winograd_f4_min_tiles [(512, 128)]: with ``winograd_tile=None``, F(4x4) from this many 4x4 output
        tiles: the first number in general, the second when both channel counts are <= 128.  Below
        it F(4x4)'s 36 x C_out x C_in weight transform outweighs its saving (measured: 512 channels at
        64^2 and deeper run F(2x2)).
    winograd_band [1 << 22 = 16 MiB of float32]: elements of the larger of the transformed input
        V (positions, C_in, tiles) and product M (positions, C_out, tiles) per band of tiles, when
        each stage runs on all cores (a single image).
    winograd_pipe_band [1 << 20 = 4 MiB]: the same for batches of at least one image per core.  There
        each core runs whole bands (transform, GEMMs, transform back) in its own buffers, so a band's
        V and M are still in cache when the next stage reads them (measured 10-20 % faster per layer
        at batch 4-8 x 16-256 channels x 64-128^2; one 572^2 image is faster with all cores on each
        stage of 16 MiB bands).
    small_map_columns [1024]: im2col convolutions with at most this many output columns
        (N * H_out * row length; deep, wide layers such as 512 channels at 8x8) run as one GEMM split
        over channels instead of tiles: tiles of a few rows would make thin GEMMs and per-thread dW.
    tile_elems [1 << 21 = 8 MiB of float32]: the im2col column-buffer budget per tile, in elements.
        Measured on a 2-core machine: smaller tiles starve the GEMM, larger ones leave the cache.
    """
    winograd: bool = True
    winograd_min_channels: int = 8
    winograd_min_tiles: int = 64
    winograd_tile: object = None
    winograd_f4_min_tiles: tuple = (512, 128)
    winograd_band: int = 1 << 22
    winograd_pipe_band: int = 1 << 20
    small_map_columns: int = 1024
    tile_elems: int = 1 << 21


class Settings(threading.local):
    """The fields and their defaults (see the module docstring).  Class attributes: each thread starts
    from them; ``fast`` is shared by every thread (one FastOptions object)."""

    backend = "fast"
    check_finite = True
    grad = True
    meta = False
    trace = None
    depth = 0
    fast = FastOptions()


settings = Settings()
