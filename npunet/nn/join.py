"""Joins and crops: CropConcat, CenterCrop, Concat, Add, Mul (``nn.Op`` declarations), Flatten."""
import numpy as np

from ..backends import current as ops
from .module import Module, check_array
from .op import Op


def _check_same_batch(layer, a, b, names):
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"{layer.label}: {names[0]} and {names[1]} have different batch sizes "
                         f"{a.shape[0]} and {b.shape[0]}")
    if a.dtype != b.dtype:
        raise TypeError(f"{layer.label}: {names[0]} is {a.dtype} but {names[1]} is {b.dtype}; mixed dtypes")


class CropConcat(Op):
    """U-Net copy-and-crop.  forward(skip, x): center-crop skip (N, Cs, Hs, Ws) to x's (H, W)
    (64 -> 56 in the paper: (Hs - H) // 2 pixels off the top/left) and concatenate [skip, x]
    on channels -> (N, Cs + Cx, H, W).  backward -> (d_skip, d_x), d_skip zero on the border."""

    op = "crop_concat"

    def _check(self, skip, x):
        check_array(self, skip, 4, what="skip")
        check_array(self, x, 4, what="x")
        _check_same_batch(self, skip, x, ("skip", "x"))
        if skip.shape[2] < x.shape[2] or skip.shape[3] < x.shape[3]:
            raise ValueError(f"{self.label}: the skip map {tuple(skip.shape[2:])} is smaller than x "
                             f"{tuple(x.shape[2:])}; copy-and-crop can only crop, not pad")
        return (x.shape[0], skip.shape[1] + x.shape[1]) + tuple(x.shape[2:])



class CenterCrop(Op):
    """forward(x, like): center-crop x (N, C, H, W) to like's (H', W') -> (N, C, H', W'), the crop
    starting at ((H - H') // 2, (W - W') // 2).  backward -> dx (zero on the border); ``like``
    only lends its size.  Used by valid-padded residual blocks to crop the shortcut."""

    op = "center_crop"

    def _check(self, x, like):
        check_array(self, x, 4)
        if x.shape[2] < like.shape[2] or x.shape[3] < like.shape[3]:
            raise ValueError(f"{self.label}: cannot crop {tuple(x.shape[2:])} to the larger {tuple(like.shape[2:])}")
        return tuple(x.shape[:2]) + tuple(like.shape[2:])

    def forward(self, x, like):  # the pair takes x and the size: like is no input of it
        shape = self._check(x, like)
        out, cache = ops().center_crop_forward(x, shape[2:])
        self._save(cache, out)
        return out


class Concat(Op):
    """Channel concatenation of any number of (N, C_i, H, W) maps -> (N, sum C_i, H, W).
    backward -> tuple of the pieces' gradients, in input order."""

    op = "concat"

    def _check(self, *xs):
        if len(xs) < 1:
            raise ValueError(f"{self.label}: needs at least one input")
        for i, x in enumerate(xs):
            check_array(self, x, 4, what=f"input {i}")
            if x.dtype != xs[0].dtype:
                raise TypeError(f"{self.label}: input {i} is {x.dtype} but input 0 is {xs[0].dtype}; mixed dtypes")
            if x.shape[0] != xs[0].shape[0] or x.shape[2:] != xs[0].shape[2:]:
                raise ValueError(f"{self.label}: input {i} has shape {tuple(x.shape)} but input 0 "
                                 f"has {tuple(xs[0].shape)}; all must share N, H and W")
        return (xs[0].shape[0], sum(x.shape[1] for x in xs)) + tuple(xs[0].shape[2:])



class _Binary(Op):

    def _check(self, a, b):
        check_array(self, a, a.ndim, what="a")
        check_array(self, b, b.ndim, what="b")
        if a.dtype != b.dtype:
            raise TypeError(f"{self.label}: a is {a.dtype} but b is {b.dtype}; mixed dtypes")
        try:
            return np.broadcast_shapes(tuple(a.shape), tuple(b.shape))
        except ValueError:
            raise ValueError(f"{self.label}: shapes {tuple(a.shape)} and {tuple(b.shape)} do not broadcast") from None


class Add(_Binary):
    """out = a + b (NumPy broadcasting); backward -> (da, db) summed back to each shape."""

    op = "add"


class Mul(_Binary):
    """out = a * b (NumPy broadcasting); backward -> (grad * b, grad * a) summed back to each shape."""

    op = "mul"
    keeps_inputs = True  # the cache is (a, b)

    def kept(self, inputs, out):
        return list(inputs), 0


class Flatten(Module):
    """x: (N, d1, d2, ...) -> (N, d1*d2*...), as PyTorch's nn.Flatten(); backward reshapes back."""

    _leaf = True

    def _check(self, x):
        check_array(self, x, np.ndim(x))
        return (x.shape[0], int(np.prod(x.shape[1:])))

    def forward(self, x):
        shape = self._check(x)
        out = x.reshape(shape).copy()
        self._save(x.shape, out)
        return out

    def backward(self, grad):
        _, x_shape = self._restore(grad)
        return grad.reshape(x_shape).copy()
