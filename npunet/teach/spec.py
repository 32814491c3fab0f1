"""What an exercise is (one file per exercise in npunet/teach/exercises/) and the helpers they share."""
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Exercise:
    """One exercise of lessons/exercises/.

    name: what ``npunet check`` takes; file: NN_name.py in lessons/exercises/ (and solutions/);
    title: for the report; functions: the names the student defines.
    reference(): a namespace with the same functions built from npunet's reference ops.
    cases: keyword dicts for make(rng, **case) -> inputs (arrays, and modules for the model parts).
    forward(impl, inputs, case) -> ({output name: array}, state);
    backward(impl, state, douts) -> {gradient name: array}.
    hints: output/gradient name (or "param") -> the formula to compare with."""
    name: str
    file: str
    title: str
    functions: tuple
    reference: object
    cases: list
    make: object
    forward: object
    backward: object
    hints: dict


class ShapeError(Exception):
    """The student's function returned the wrong form (not a tuple of n, wrong list length)."""


def arr(rng, *shape):
    return rng.standard_normal(shape)


def unpack(result, n, what):
    if not isinstance(result, tuple) or len(result) != n:
        got = f"a tuple of {len(result)}" if isinstance(result, tuple) else type(result).__name__
        raise ShapeError(f"{what} must return a tuple of {n}, got {got}")
    return result


def params(prefix, module):
    """Parameter gradients of a module, named like its state_dict under prefix."""
    return {f"{prefix}.{k}": p.grad for k, p in module.named_parameters()}


def conv_block(nn, cin, cout):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU()).to(np.float64)


class seeded:
    """Identical modules on every call: npunet.init's generator reseeded, then restored."""

    def __init__(self, seed):
        self.seed = seed

    def __enter__(self):
        from .. import init
        self.saved = init._rng
        init._rng = np.random.default_rng(self.seed)

    def __exit__(self, *exc):
        from .. import init
        init._rng = self.saved
