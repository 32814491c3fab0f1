"""The fast backend's tuning knobs, in one object, changed only through a context manager.

    with npunet.fast_options(winograd=False):     # the im2col path alone, e.g. to time it
        y = model(x)
    # every knob is back to what it was, even if the block raised

The knobs choose between strategies that compute the same convolution (to float rounding) and
size the scratch buffers; none changes what a model computes beyond float32 rounding.  The
defaults were measured on a 2-core machine (numbers in each knob's note).  The options are one
object for the whole process (as module constants were): set them around a block, not from
threads that run models at the same time.  The knobs, their defaults and why: ``FastOptions`` in
``npunet/settings.py``.
"""
from contextlib import contextmanager
from dataclasses import fields

from ...settings import FastOptions, settings  # noqa: F401  (FastOptions: the knobs and their notes)

OPTIONS = settings.fast  # the knobs in force: npunet's one settings object holds them; fast_options() changes them

_NAMES = tuple(f.name for f in fields(FastOptions))


def _check(name, value):
    """One clear line for a value the backend could not use."""
    if name == "winograd":
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
