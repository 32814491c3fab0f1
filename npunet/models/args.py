"""Strict checks of constructor arguments: an integer must be an integer (not "8", not 4.5), sizes
positive, choices from their list.  Messages name the model, the argument, what was expected and
what came."""
import numbers


def integer(owner, name, v, low=1):
    if isinstance(v, bool) or not isinstance(v, numbers.Integral):
        raise TypeError(f"{owner}: {name} must be an integer >= {low}, got {v!r} ({type(v).__name__})")
    if v < low:
        raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {v}")
    return int(v)


def integers(owner, name, vs, low=1, length=None):
    if isinstance(vs, (str, bytes)) or not hasattr(vs, "__len__"):
        raise TypeError(f"{owner}: {name} must be a list of integers, got {vs!r}")
    if length is not None and len(vs) != length:
        raise ValueError(f"{owner}: {name} must have {length} entries, got {len(vs)}: {list(vs)}")
    return tuple(integer(owner, f"{name}[{i}]", v, low) for i, v in enumerate(vs))


def boolean(owner, name, v):
    if not isinstance(v, bool):
        raise TypeError(f"{owner}: {name} must be True or False, got {v!r} ({type(v).__name__})")
    return v


def choice(owner, name, v, choices):
    if v not in choices:
        raise ValueError(f"{owner}: {name} must be one of {', '.join(repr(c) for c in choices)}, got {v!r}")
    return v


def probability(owner, name, v):
    if isinstance(v, bool) or not isinstance(v, numbers.Real) or not 0 <= v < 1:
        raise ValueError(f"{owner}: {name} must be a number in [0, 1), got {v!r}")
    return float(v)
