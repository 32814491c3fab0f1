"""Argument checks shared by the layers' constructors (one clear line naming the layer)."""
import numpy as np


def _int(v, name, layer):
    """An integer argument: 4 or np.int64(4), never "4" or 4.5 (int() would silently accept them)."""
    if isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer)):
        raise TypeError(f"{layer}: {name} must be an integer, got {v!r} ({type(v).__name__})")
    return int(v)


def _pair(v, name, layer):
    if np.isscalar(v):
        v = (v, v)
    v = tuple(_int(a, name, layer) for a in v)
    if len(v) != 2:
        raise ValueError(f"{layer}: {name} must be an int or a pair, got {v}")
    return v
