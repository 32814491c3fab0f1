"""What every loss shares: the ``Loss`` base (forward keeps the cache, backward uses it), the
checks of logits, targets and weight maps, softmax, and the reductions ("mean", "sum", "none")."""
import warnings

import numpy as np

SMP_MODES = ("binary", "multilabel", "multiclass")   # segmentation_models_pytorch's loss modes


# ================================================================== validation

def _check_logits(loss, z, min_ndim=2):
    name = type(loss).__name__
    if not isinstance(z, np.ndarray):
        raise TypeError(f"{name}: expected logits as a numpy array, got {type(z).__name__}")
    if z.dtype not in (np.float32, np.float64):
        raise TypeError(f"{name}: expected float32 or float64 logits, got {z.dtype}")
    if z.ndim < min_ndim:
        raise ValueError(f"{name}: expected logits of shape (N, C, H, W), got {z.shape}")
    if z.size == 0:
        raise ValueError(f"{name}: empty logits {z.shape} (a batch of 0 images?); a mean over nothing is undefined")
    if not np.isfinite(z).all():
        raise FloatingPointError(f"{name}: the logits contain {int((~np.isfinite(z)).sum())} NaN/Inf value(s); "
                                 f"training has diverged or the input data has NaNs")
    if z.size > 16 and z.min() >= 0 and z.max() <= 1 and _look_like_probabilities(z):
        warnings.warn(f"{name}: every logit lies in [0, 1]; this loss expects raw logits (before sigmoid/softmax), "
                      f"not probabilities", stacklevel=3)


def _look_like_probabilities(z):
    """Values in [0, 1] that also sum to 1 over the classes (softmax) or, for one channel, spread over
    most of [0, 1] (sigmoid of a trained net).  A fresh model's logits sit in a narrow band near 0."""
    if z.ndim >= 2 and z.shape[1] > 1:
        return bool(np.allclose(z.sum(axis=1), 1, atol=1e-3))
    return float(z.max() - z.min()) > 0.9


def _check_binary_target(loss, z, y):
    name = type(loss).__name__
    y = np.asarray(y)
    if y.shape != z.shape:
        if z.ndim == 4 and z.shape[1] == 1 and y.shape == (z.shape[0],) + z.shape[2:]:
            y = y[:, None]
        else:
            raise ValueError(f"{name}: target shape {y.shape} does not match the logits {z.shape} "
                             f"(a binary target has the logits' shape, or (N, H, W) when C = 1)")
    ok = (y == 0) | (y == 1)
    if not ok.all():
        vals = np.unique(y[~ok])[:5]
        hint = " (a {0, 255} mask: divide it by 255)" if y.max() == 255 else ""
        raise ValueError(f"{name}: expected a binary target with values in {{0, 1}}, found {vals.tolist()}{hint}")
    return y.astype(z.dtype)


def _check_class_target(loss, z, y):
    name = type(loss).__name__
    y = np.asarray(y)
    if y.shape != (z.shape[0],) + z.shape[2:]:
        raise ValueError(f"{name}: expected an integer target of shape {(z.shape[0],) + z.shape[2:]} "
                         f"(N, H, W) for logits {z.shape}, got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        raise TypeError(f"{name}: expected integer class labels, got dtype {y.dtype}")
    if y.size and (y.min() < 0 or y.max() >= z.shape[1]):
        raise ValueError(f"{name}: target labels must lie in [0, {z.shape[1]}), found range "
                         f"[{y.min()}, {y.max()}]")
    return y


def _check_weight(loss, w, shape, dtype):
    if w is None:
        return None
    w = np.asarray(w)
    if len(shape) == 4 and shape[1] == 1 and w.shape == (shape[0],) + tuple(shape[2:]):
        w = w[:, None]  # an (N, H, W) map for single-channel logits
    try:
        if np.broadcast_shapes(w.shape, shape) != tuple(shape):
            raise ValueError
    except ValueError:
        raise ValueError(f"{type(loss).__name__}: weight map of shape {w.shape} does not match {shape}") from None
    if not np.isfinite(w).all() or (w < 0).any():
        raise ValueError(f"{type(loss).__name__}: the weight map must be finite and non-negative")
    return w.astype(dtype)


class Loss:
    """Base: ``forward`` runs the pure pair and keeps the cache for ``backward``."""

    target = "binary"
    accepts_weight = False
    _cache = None

    def __call__(self, z, target, weight=None):
        return self.forward(z, target, weight)

    def forward(self, z, target, weight=None):
        """z: logits (N, C, H, W); target: see ``self.target``; weight: (N, H, W) map or None -> float."""
        if weight is not None and not self.accepts_weight:
            raise ValueError(f"{type(self).__name__} cannot use a weight map (it is not a per-pixel sum); "
                             f"pass weight=None, or use CrossEntropyLoss / BCEWithLogitsLoss for a weighted loss")
        value, self._cache = self.loss_forward(z, target, weight)
        return value

    def backward(self, grad=None):
        """dL/dz of the last forward (same shape and dtype as z).  grad: the gradient arriving at the
        loss (a number; for reduction='none' one per pixel, as PyTorch's ``loss.backward(grad)``)."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward() called before forward()")
        if grad is None:
            return self.loss_backward(self._cache)
        if getattr(self, "reduction", "mean") == "none":
            return self.loss_backward(self._cache, grad)
        return (self.loss_backward(self._cache) * float(np.asarray(grad))).astype(self._dtype_of_cache())

    def _dtype_of_cache(self):
        c = self._cache
        return c[0].dtype if isinstance(c, tuple) and isinstance(c[0], np.ndarray) else np.float64

    def loss_forward(self, z, target, weight=None):
        raise NotImplementedError

    def loss_backward(self, cache):
        raise NotImplementedError


def softmax(z, axis=1):
    """Softmax with log-sum-exp stabilisation."""
    e = np.exp(z - z.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(z, axis=1):
    m = z.max(axis=axis, keepdims=True)
    return z - m - np.log(np.exp(z - m).sum(axis=axis, keepdims=True))


# ================================================================== reductions

_REDUCTIONS = ("mean", "sum", "none")


def _reduction(loss, reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{type(loss).__name__}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")
    return reduction


def _reduce(per, reduction, denom):
    """per-pixel losses -> the value forward returns (a float, or the array for reduction='none')."""
    if reduction == "none":
        return per
    total = per.sum()
    return float(total if reduction == "sum" else total / denom)


def _upstream(loss, grad, shape, reduction, denom):
    """The gradient arriving at each per-pixel loss: 1/denom (mean), 1 (sum) or ``grad`` (none)."""
    if reduction == "none":
        if grad is None:
            raise ValueError(f"{type(loss).__name__}: reduction='none' returns one loss per pixel; pass their "
                             f"gradient to backward(grad) (shape {shape})")
        grad = np.asarray(grad, dtype=np.float64)
        if grad.shape != tuple(shape):
            raise ValueError(f"{type(loss).__name__}: backward expected a gradient of shape {tuple(shape)}, got {grad.shape}")
        return grad
    scale = 1.0 if grad is None else float(np.asarray(grad))
    return scale if reduction == "sum" else scale / denom
