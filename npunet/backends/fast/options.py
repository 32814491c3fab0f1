"""The fast backend's tuning knobs, in one object, changed only through a context manager.

    with npunet.fast_options(winograd=False):     # the im2col path alone, e.g. to time it
        y = model(x)
    # every knob is back to what it was, even if the block raised

The knobs choose between strategies that compute the same convolution (to float rounding) and
size the scratch buffers; none changes what a model computes beyond float32 rounding.  The
defaults were measured on a 2-core machine (numbers in each knob's note).  The options are one
object for the whole process (as module constants were), the field ``fast`` of npunet's settings
object (npunet/settings.py): set them around a block, not from threads that run models at the same time.
"""
from contextlib import contextmanager
from dataclasses import dataclass, fields

from ...settings import Settings


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
    winograd_wide_min_tiles [128]: ... and for wide layers (C_in x C_out >= 512 x 512) at least this
        many.  Their 16 x C_out x C_in transformed weights (made in the forward, again in the backward,
        and their adjoint) cost about what few tiles' GEMMs save: measured fwd + bwd at 8x8 maps, 64
        tiles, 4 x 512->512 (ResNet-34's last stage at 4 x 256^2): F(2x2) 36-72 ms vs im2col 31-35 ms
        over three runs; 4 x 256->256 was mixed (F(2x2) 7-13 ms vs im2col 10) and stays on Winograd.
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
    direct [True]: 3x3 stride-1 padding-1 float32 convolutions (groups 1) with few channels run as
        direct loops (``kernels.direct``: no im2col, no Winograd transforms) when ``direct_max_pairs``
        or ``direct_max_out`` allows; False: they take Winograd or im2col as before.
    direct_max_pairs [512]: ... with at most this many channel pairs C_in x C_out.  The direct loops
        cost C_in x C_out products per output pixel, Winograd's transforms ~(C_in + C_out) and its GEMMs
        a quarter of the products: measured (CPU time, batch 8, fwd / bwd vs the path before),
        1 -> 16 at 128^2 2.7x / 2x faster, 16 -> 16 1.6x / 1.1x, 32 -> 16 1.3x / 1.2x, 8 -> 64 1.6x / 1.0x,
        16 -> 32 at 64^2 equal; 32 -> 32 (1024 pairs) at 64^2 1.3x slower.
    direct_max_out [16]: ... or at most this many output channels, whatever C_in.  With few outputs
        Winograd's input-side transforms (C_in channels, in the backward twice) outweigh the saved
        products: 256 -> 16 at 4 x 128^2 backward 127 -> 99 ms, 128 -> 16 at 4 x 64^2 20 -> 12 ms,
        256 -> 16 at 64^2 and 64 -> 16 equal; 256 -> 32 is 1.6x slower direct, so the limit is 16.
    small_map_columns [1024]: im2col convolutions with at most this many output columns
        (N * H_out * row length; deep, wide layers such as 512 channels at 8x8) run as one GEMM split
        over channels instead of tiles: tiles of a few rows would make thin GEMMs and per-thread dW.
    tile_elems [1 << 21 = 8 MiB of float32]: the im2col column-buffer budget per tile, in elements.
        Measured on a 2-core machine: smaller tiles starve the GEMM, larger ones leave the cache.
    """
    winograd: bool = True
    winograd_min_channels: int = 8
    winograd_min_tiles: int = 64
    winograd_wide_min_tiles: int = 128
    winograd_tile: object = None
    winograd_f4_min_tiles: tuple = (512, 128)
    winograd_band: int = 1 << 22
    winograd_pipe_band: int = 1 << 20
    direct: bool = True
    direct_max_pairs: int = 512
    direct_max_out: int = 16
    small_map_columns: int = 1024
    tile_elems: int = 1 << 21


OPTIONS = FastOptions()  # the knobs in force; read by the fast backend, changed by fast_options()
Settings.fast = OPTIONS  # ... and one field of npunet's settings object (shared by every thread)

_NAMES = tuple(f.name for f in fields(FastOptions))


def _check(name, value):
    """One clear line for a value the backend could not use."""
    if name in ("winograd", "direct"):
        ok = isinstance(value, bool)
        want = "True or False"
    elif name == "winograd_tile":
        ok = value in (None, 2, 4) and not isinstance(value, bool)
        want = "None, 2 or 4"
    elif name == "winograd_f4_min_tiles":
        ok = (isinstance(value, tuple) and len(value) == 2
              and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value))
        want = "a pair of counts (general, when both channel counts are <= 128)"
    else:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= 0
        want = "a count >= 0"
    if not ok:
        raise ValueError(f"npunet.fast_options: {name} must be {want}, got {value!r}")


@contextmanager
def fast_options(**changes):
    """``with npunet.fast_options(winograd=False, tile_elems=1 << 20): ...`` runs the block with those
    knobs (see FastOptions for each one) and restores the previous values on exit, also after an
    exception.  Yields the options object (read-only use: e.g. ``opts.winograd``)."""
    for name, value in changes.items():
        if name not in _NAMES:
            raise TypeError(f"npunet.fast_options: unknown option {name!r}; the options are {', '.join(_NAMES)}")
        _check(name, value)
    saved = {name: getattr(OPTIONS, name) for name in changes}
    try:
        for name, value in changes.items():
            setattr(OPTIONS, name, value)
        yield OPTIONS
    finally:
        for name, value in saved.items():
            setattr(OPTIONS, name, value)
