"""Segmentation losses with hand-written gradients.

Every loss is a pure pair ``loss_forward(z, target, weight) -> (value, cache)`` /
``loss_backward(cache) -> dL/dz`` (same shape and dtype as z), wrapped PyTorch-style as
``forward(z, target[, weight]) -> float`` and ``backward() -> dL/dz``.
Logits z: (N, C, H, W).  p = sigmoid(z) unless the mode says softmax.

Each loss declares what it takes:
  ``target``          "class": integer labels (N, H, W); "binary": {0, 1} of z's shape or (N, H, W)
  ``accepts_weight``  whether a per-pixel weight map (the U-Net paper's eq. 2) can be passed
"""
import warnings

import numpy as np

from .functional import sigmoid

MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)


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


def _softplus(z):
    """log(1 + e^z) without overflow."""
    return np.maximum(z, 0) + np.log1p(np.exp(-np.abs(z)))


# ================================================================== pixel losses

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


class CrossEntropyLoss(Loss):
    """PyTorch's ``nn.CrossEntropyLoss(weight, ignore_index, reduction, label_smoothing)`` over pixels,
    times npunet's optional per-pixel weight map (the U-Net paper's eq. 1 with eq. 2's map).

    z: (N, C, H, W) logits; target: (N, H, W) int in [0, C) or ignore_index; weight (in forward): an
    (N, H, W) map or None.  With logp = log_softmax(z), class weights w (ones if None), eps =
    label_smoothing, per pixel i (0 where target = ignore_index):
        l_i = map_i * ((1 - eps) * w[y_i] * -logp[y_i] + eps / C * sum_c w[c] * -logp[c])
    reduction "mean": sum_i l_i / sum_i w[y_i] over the kept pixels (PyTorch's weighted mean; the map
    is not in the denominator, so without it the value is PyTorch's); "sum": sum_i l_i; "none": l (N, H, W).
    """

    target = "class"
    accepts_weight = True

    def __init__(self, weight=None, ignore_index=-100, reduction="mean", label_smoothing=0.0):
        self.weight = None if weight is None else np.asarray(weight, dtype=np.float64)
        if self.weight is not None and (self.weight.ndim != 1 or (self.weight < 0).any()):
            raise ValueError(f"CrossEntropyLoss: weight must be one non-negative number per class (C,), "
                             f"got shape {self.weight.shape}")
        self.ignore_index = int(ignore_index)
        self.reduction = _reduction(self, reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def loss_forward(self, z, target, weight=None):
        _check_logits(self, z)
        C = z.shape[1]
        y = np.asarray(target)
        keep = y != self.ignore_index
        y = _check_class_target(self, z, np.where(keep, y, 0) if not keep.all() else y)
        if self.weight is not None and self.weight.shape != (C,):
            raise ValueError(f"CrossEntropyLoss: weight has {self.weight.shape[0]} class weights, the logits {C} classes")
        m = _check_weight(self, weight, y.shape, np.float64)
        m = np.ones(y.shape) if m is None else np.broadcast_to(m, y.shape)
        cw = np.ones(C) if self.weight is None else self.weight
        logp = log_softmax(z.astype(np.float64))
        wy = np.where(keep, cw[y], 0.0)                                      # (N, H, W)
        nll = -np.take_along_axis(logp, y[:, None].astype(np.int64), axis=1)[:, 0]
        eps = self.label_smoothing
        per = (1 - eps) * wy * nll
        if eps:
            smooth = -(logp * cw[None, :, None, None]).sum(axis=1)
            per = per + eps / C * np.where(keep, smooth, 0.0)
        per = m * per
        denom = wy.sum()                                                     # 0 / 0 = nan when all ignored, as PyTorch
        with np.errstate(invalid="ignore", divide="ignore"):
            value = _reduce(per.astype(z.dtype) if self.reduction == "none" else per, self.reduction, denom)
        return value, (logp, y, keep, wy, m, cw, denom, z.dtype)

    def loss_backward(self, cache, grad=None):
        logp, y, keep, wy, m, cw, denom, dtype = cache
        up = _upstream(self, grad, y.shape, self.reduction, denom) * m       # dL / dl_i
        s = np.exp(logp)
        eps, C = self.label_smoothing, logp.shape[1]
        g = s * ((1 - eps) * wy)[:, None]
        idx = y[:, None].astype(np.int64)
        np.put_along_axis(g, idx, np.take_along_axis(g, idx, 1) - ((1 - eps) * wy)[:, None], 1)
        if eps:  # d/dz of -sum_c w_c logp_c = W s - w
            g = g + eps / C * keep[:, None] * (cw.sum() * s - cw[None, :, None, None])
        with np.errstate(invalid="ignore"):
            return (g * up[:, None] if np.ndim(up) else g * up).astype(dtype)


class BCEWithLogitsLoss(Loss):
    """PyTorch's ``nn.BCEWithLogitsLoss(weight, reduction, pos_weight)``, times npunet's optional map.

    Per element, with q = 1 + (pos_weight - 1) * y:
        l = weight * map * ((1 - y) * z + q * (log(1 + e^{-|z|}) + max(-z, 0)))
    (= -w [pos_weight y log p + (1 - y) log(1 - p)], p = sigmoid(z)); target y in {0, 1} of z's shape
    (or (N, H, W) for one channel); weight, pos_weight: broadcastable to z (pos_weight (C, 1, 1) for one
    per channel of (N, C, H, W) logits: PyTorch broadcasts from the last axis).  reduction "mean": sum / numel.
    """

    accepts_weight = True

    def __init__(self, weight=None, reduction="mean", pos_weight=None):
        self.weight = None if weight is None else np.asarray(weight, dtype=np.float64)
        self.pos_weight = None if pos_weight is None else np.asarray(pos_weight, dtype=np.float64)
        self.reduction = _reduction(self, reduction)

    def loss_forward(self, z, target, weight=None):
        _check_logits(self, z)
        y = _check_binary_target(self, z, target).astype(np.float64)
        m = _check_weight(self, weight, z.shape, np.float64)
        w = 1.0 if m is None else m
        for name, extra in (("weight", self.weight), ("pos_weight", self.pos_weight)):
            if extra is not None:
                try:
                    np.broadcast_shapes(extra.shape, z.shape)
                except ValueError:
                    raise ValueError(f"BCEWithLogitsLoss: {name} of shape {extra.shape} does not broadcast "
                                     f"to the logits {z.shape}") from None
        if self.weight is not None:
            w = w * self.weight
        z64 = z.astype(np.float64)
        q = 1.0 if self.pos_weight is None else 1 + (self.pos_weight - 1) * y
        per = w * ((1 - y) * z64 + q * (np.log1p(np.exp(-np.abs(z64))) + np.maximum(-z64, 0)))
        per = np.broadcast_to(per, z.shape)
        value = _reduce(per.astype(z.dtype) if self.reduction == "none" else per, self.reduction, z.size)
        return value, (z, y, w, q)

    def loss_backward(self, cache, grad=None):
        z, y, w, q = cache
        up = _upstream(self, grad, z.shape, self.reduction, z.size)
        # d/dz softplus(-z) = -sigmoid(-z) = p - 1
        d = w * ((1 - y) + q * (sigmoid(z.astype(np.float64)) - 1)) * up
        return np.broadcast_to(d, z.shape).astype(z.dtype)


def _focal_terms(z, y, gamma, alpha):
    """Per element: (loss, dloss/dz) of a_t (1 - p_t)^gamma * ce, ce = BCE-with-logits, p_t = e^{-ce};
    a_t = alpha y + (1 - alpha)(1 - y) (1 without alpha).  d/dz: ce' = p - y, p_t' = -p_t ce'."""
    ce = np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))
    pt = np.exp(-ce)
    one_m = 1 - pt
    mod = one_m ** gamma
    p = sigmoid(z)
    with np.errstate(divide="ignore", invalid="ignore"):
        dmod = np.where(one_m > 0, gamma * one_m ** (gamma - 1), 0.0) if gamma != 0 else np.zeros_like(one_m)
    d = (p - y) * (dmod * pt * ce + mod)
    at = 1.0 if alpha is None else alpha * y + (1 - alpha) * (1 - y)
    return at * mod * ce, at * d


class FocalLoss(Loss):
    """Focal loss (Lin et al. 2017).  Two signatures:

    npunet's / torchvision's ``FocalLoss(alpha=0.25, gamma=2.0)``: binary, torchvision's
    sigmoid_focal_loss with reduction='mean': L = mean(a_t (1 - p_t)^gamma ce), p_t = p y + (1-p)(1-y);
    alpha < 0 drops a_t.
    SMP's ``FocalLoss(mode, alpha=None, gamma=2.0, ignore_index=None, reduction="mean")`` (mode
    "binary" | "multilabel" | "multiclass", given first or by name): per class c (one-vs-rest
    sigmoid focal of channel c; multiclass targets y == c), the mean over the pixels whose target is
    not ignore_index; L = mean (or sum) over the classes.  SMP's normalized / reduced_threshold are not
    implemented (refused).
    """

    def __init__(self, *args, **kwargs):
        smp = (args and isinstance(args[0], str)) or "mode" in kwargs
        if not smp:
            names = ("alpha", "gamma")
            kw = dict(zip(names, args), **kwargs)
            unknown = set(kw) - set(names)
            if unknown or len(args) > 2:
                raise TypeError(f"FocalLoss: unexpected arguments {sorted(unknown)}; npunet's signature is "
                                f"FocalLoss(alpha=0.25, gamma=2.0), SMP's FocalLoss(mode, alpha=None, gamma=2.0, "
                                f"ignore_index=None, reduction='mean')")
            self.mode, self.alpha, self.gamma, self.ignore_index, self.reduction = None, float(kw.get("alpha", 0.25)), \
                float(kw.get("gamma", 2.0)), None, "mean"
            return
        names = ("mode", "alpha", "gamma", "ignore_index", "from_logits", "eps", "reduction", "normalized",
                 "reduced_threshold")
        if len(args) > len(names):
            raise TypeError(f"FocalLoss: at most {len(names)} positional arguments, got {len(args)}")
        kw = dict(zip(names, args))
        for k, v in kwargs.items():
            if k in kw:
                raise TypeError(f"FocalLoss: got '{k}' twice")
            if k not in names:
                raise TypeError(f"FocalLoss: unexpected keyword '{k}'; SMP's signature is FocalLoss(mode, alpha=None, "
                                f"gamma=2.0, ignore_index=None, reduction='mean')")
            kw[k] = v
        self.mode = kw["mode"]
        if self.mode not in _RegionLoss.MODES:
            raise ValueError(f"FocalLoss: mode must be one of {_RegionLoss.MODES}, got {self.mode!r}")
        if kw.get("normalized") or kw.get("reduced_threshold") is not None or kw.get("from_logits", True) is not True:
            raise ValueError("FocalLoss: SMP's normalized=True, reduced_threshold and from_logits=False are not "
                             "implemented in npunet; pass logits with the defaults")
        a = kw.get("alpha")
        self.alpha = None if a is None else float(a)
        self.gamma = float(kw.get("gamma", 2.0))
        self.ignore_index = kw.get("ignore_index")
        self.reduction = kw.get("reduction", "mean")
        if self.reduction not in ("mean", "sum"):
            raise ValueError(f"FocalLoss: reduction must be 'mean' or 'sum', got {self.reduction!r}")
        self.target = "class" if self.mode == "multiclass" else "binary"

    def loss_forward(self, z, target, weight=None):
        _check_logits(self, z)
        if self.mode is None:
            return self._torchvision_forward(z, target)
        z64 = z.astype(np.float64)
        y = np.asarray(target)
        if self.mode == "multiclass":
            keep = y != self.ignore_index if self.ignore_index is not None else np.ones(y.shape, bool)
            y = _check_class_target(self, z, np.where(keep, y, 0))
            Y = (y[:, None] == np.arange(z.shape[1])[None, :, None, None]).astype(np.float64)
            keep = np.broadcast_to(keep[:, None], z.shape)
        else:
            if self.mode == "binary" and y.shape == (z.shape[0],) + z.shape[2:] and z.shape[1] == 1:
                y = y[:, None]
            keep = y != self.ignore_index if self.ignore_index is not None else np.ones(y.shape, bool)
            Y = _check_binary_target(self, z, np.where(keep, y, 0)).astype(np.float64)
            keep = np.broadcast_to(keep, z.shape)
        per, d = _focal_terms(z64, Y, self.gamma, self.alpha)
        # binary: one class over all elements; else one class per channel
        axes = tuple(range(z.ndim)) if self.mode == "binary" else (0,) + tuple(range(2, z.ndim))
        n = keep.sum(axis=axes)                                   # kept pixels per class
        per = np.where(keep, per, 0.0)
        cls = per.sum(axis=axes) if self.reduction == "sum" else per.sum(axis=axes) / n
        K = np.size(cls)
        scale = np.ones_like(np.asarray(cls, dtype=np.float64)) if self.reduction == "sum" else 1.0 / n
        ex = (slice(None), slice(None)) + (None,) * (z.ndim - 2)
        scale = np.broadcast_to(scale, (1,))[0] if self.mode == "binary" else np.asarray(scale)[ex[1:]][None]
        grad = np.where(keep, d, 0.0) * scale / K
        return float(np.mean(cls)), (z, grad)

    def _torchvision_forward(self, z, target):
        y = _check_binary_target(self, z, target)
        z64 = z.astype(np.float64)
        p = sigmoid(z64)
        ce = np.maximum(z64, 0) - z64 * y + np.log1p(np.exp(-np.abs(z64)))
        pt = p * y + (1 - p) * (1 - y)
        at = self.alpha * y + (1 - self.alpha) * (1 - y) if self.alpha >= 0 else np.ones_like(y)
        mod = (1 - pt) ** self.gamma
        return float(np.mean(at * mod * ce)), (z, y, p, ce, pt, at)

    def loss_backward(self, cache):
        if self.mode is not None:
            z, grad = cache
            return grad.astype(z.dtype)
        z, y, p, ce, pt, at = cache
        g = self.gamma
        one_m = 1 - pt
        # d(1-p_t)^g/dz = -g (1-p_t)^(g-1) * dp_t/dz, dp_t/dz = p(1-p)(2y-1); 0 where 1-p_t = 0
        with np.errstate(divide="ignore", invalid="ignore"):
            dmod = np.where(one_m > 0, -g * one_m ** (g - 1), 0.0) if g != 0 else np.zeros_like(one_m)
        dmod = dmod * p * (1 - p) * (2 * y - 1)
        d = at * (dmod * ce + one_m ** g * (p - y))
        return (d / z.size).astype(z.dtype)


# ================================================================== region losses

def _region_probs(loss, z, target):
    """Probabilities and one-hot/binary targets for Dice/IoU; returns (p, y, mode)."""
    if loss.mode == "multiclass":
        y = _check_class_target(loss, z, target)
        p = softmax(z.astype(np.float64))
        onehot = np.zeros_like(p)
        np.put_along_axis(onehot, y[:, None].astype(np.int64), 1.0, axis=1)
        return p, onehot
    y = _check_binary_target(loss, z, target).astype(np.float64)
    return sigmoid(z.astype(np.float64)), y


def _region_backward(dp, p, mode):
    if mode == "multiclass":
        return p * (dp - (p * dp).sum(axis=1, keepdims=True))
    return dp * p * (1 - p)


class _RegionLoss(Loss):
    """Dice / IoU with two signatures.

    npunet's ``DiceLoss(smooth=1.0)`` (no mode): binary, per image and channel
    s = score(sum over H, W), L = 1 - mean(s) (the classic soft Dice / IoU with additive smoothing).
    SMP's ``DiceLoss(mode, classes=None, log_loss=False, from_logits=True, smooth=0.0, ignore_index=None,
    eps=1e-7)`` (mode given, first or by name): per class, sums over the batch and the pixels (pixels
    whose target is ignore_index left out); Dice = (I + s) / max((Sp + Sy) / 2 + s, eps), IoU = (I + s) /
    max(Sp + Sy - I + s, eps); loss_c = 1 - score (or -log(max(score, eps)) with log_loss), zero for a
    class absent from the target; L = mean over ``classes`` (all if None).  SMP's numbers and gradients.
    """

    MODES = ("binary", "multilabel", "multiclass")
    _SMP = ("mode", "classes", "log_loss", "from_logits", "smooth", "ignore_index", "eps")

    def __init__(self, *args, **kwargs):
        name = type(self).__name__
        self.smp = bool(args and isinstance(args[0], str)) or "mode" in kwargs or \
            bool(set(kwargs) & {"classes", "log_loss", "from_logits", "ignore_index", "eps"})
        names = self._SMP if self.smp else ("smooth", "mode")
        if len(args) > len(names):
            raise TypeError(f"{name}: at most {len(names)} positional arguments, got {len(args)}")
        kw = dict(zip(names, args))
        for k, v in kwargs.items():
            if k in kw or k not in self._SMP:
                raise TypeError(f"{name}: unexpected or repeated argument '{k}'; signatures: {name}(smooth=1.0) "
                                f"(npunet) or {name}(mode, classes=None, log_loss=False, from_logits=True, "
                                f"smooth=0.0, ignore_index=None, eps=1e-7) (SMP)")
            kw[k] = v
        mode = kw.get("mode", "binary")
        if mode not in self.MODES:
            raise ValueError(f"{name}: mode must be one of {self.MODES}, got {mode!r}")
        self.mode = mode
        self.target = "class" if mode == "multiclass" else "binary"
        if not self.smp:
            smooth = kw.get("smooth", 1.0)
            if not smooth > 0:
                raise ValueError(f"{name}: smooth must be > 0 (it keeps the score defined on an empty "
                                 f"mask, where sum(p) + sum(y) can be 0), got {smooth}")
            self.smooth = float(smooth)
            return
        self.classes = kw.get("classes")
        if self.classes is not None:
            if mode == "binary":
                raise ValueError(f"{name}: classes= selects classes of a multiclass/multilabel output, not binary")
            self.classes = [int(c) for c in self.classes]
        self.log_loss, self.from_logits = bool(kw.get("log_loss", False)), bool(kw.get("from_logits", True))
        self.smooth, self.eps = float(kw.get("smooth", 0.0)), float(kw.get("eps", 1e-7))
        self.ignore_index = kw.get("ignore_index")

    def loss_forward(self, z, target, weight=None):
        if not self.smp or self.from_logits:
            _check_logits(self, z)
        if self.mode == "binary" and z.ndim >= 2 and z.shape[1] != 1:
            raise ValueError(f"{type(self).__name__}: mode='binary' expects logits with 1 channel, got {z.shape}; "
                             f"use mode='multilabel' (sigmoid per channel) or 'multiclass' (softmax)")
        if self.smp:
            return self._smp_forward(z, target)
        p, y = _region_probs(self, z, target)
        ax = tuple(range(2, z.ndim))
        I, Sp, Sy = (p * y).sum(axis=ax), p.sum(axis=ax), y.sum(axis=ax)
        return float(1 - np.mean(self._score(I, Sp, Sy))), (z, p, y, I, Sp, Sy)

    def loss_backward(self, cache):
        if self.smp:
            return self._smp_backward(cache)
        z, p, y, I, Sp, Sy = cache
        dI, dS = self._score_grads(I, Sp, Sy)  # d score / dI, d score / d(sum p), per (n, c)
        ex = (slice(None), slice(None)) + (None,) * (z.ndim - 2)
        dp = -(dI[ex] * y + dS[ex]) / I.size
        return _region_backward(dp, p, self.mode).astype(z.dtype)

    # ---------------------------------------------------------------- SMP's variant
    def _smp_forward(self, z, target):
        N, C = z.shape[:2]
        z64 = z.astype(np.float64)
        if self.from_logits:
            p = softmax(z64) if self.mode == "multiclass" else sigmoid(z64)
        else:
            p = z64
        y = np.asarray(target)
        ign = self.ignore_index
        if self.mode == "multiclass":
            keep = (y != ign) if ign is not None else np.ones(y.shape, bool)
            y = _check_class_target(self, z, np.where(keep, y, 0))
            Y = (y[:, None] == np.arange(C)[None, :, None, None]).astype(np.float64)
            keep = np.broadcast_to(keep[:, None], z.shape)
        else:
            if y.shape == (N,) + z.shape[2:] and C == 1:
                y = y[:, None]
            keep = (y != ign) if ign is not None else np.ones(y.shape, bool)
            Y = _check_binary_target(self, z, np.where(keep, y, 0)).astype(np.float64)
            keep = np.broadcast_to(keep, z.shape)
        P, Y = p * keep, Y * keep
        ax = (0,) + tuple(range(2, z.ndim))
        Sp, Sy = P.sum(axis=ax), Y.sum(axis=ax)
        I = (Sp + Sy - np.abs(P - Y).sum(axis=ax)) / 2                          # SMP's intersection
        D = self._smp_denominator(I, Sp, Sy)
        Dc = np.maximum(D, self.eps)
        score = (I + self.smooth) / Dc
        loss = -np.log(np.maximum(score, self.eps)) if self.log_loss else 1.0 - score
        present = Sy > 0
        loss = loss * present
        sel = np.arange(C) if self.classes is None else np.asarray(self.classes)
        value = float(np.mean(loss[sel]))
        return value, (z, p, P, Y, keep, I, Sp, Sy, D, Dc, score, present, sel)

    def _smp_backward(self, cache):
        z, p, P, Y, keep, I, Sp, Sy, D, Dc, score, present, sel = cache
        C = z.shape[1]
        pick = np.zeros(C)
        np.add.at(pick, sel, 1.0 / len(sel))
        if self.log_loss:
            dscore = np.where(score > self.eps, -1.0 / np.maximum(score, self.eps), 0.0)
        else:
            dscore = -np.ones(C)
        dscore = dscore * present * pick                                         # dL / dscore_c
        dDc = np.where(D > self.eps, 1.0, 0.0)                                   # clamp_min's gradient
        num = I + self.smooth
        dD_dI, dD_dSp = self._smp_denominator_grads()
        dI = dscore * (1 / Dc - num / Dc ** 2 * dDc * dD_dI)
        dSp = dscore * (-num / Dc ** 2 * dDc * dD_dSp)
        ex = (None, slice(None)) + (None,) * (z.ndim - 2)
        # I = (Sp + Sy - sum|P - Y|) / 2 gives dI/dP = (1 - sign(P - Y)) / 2; Sp's own path adds dSp;
        # P = p * keep
        dp = (dI[ex] * (1 - np.sign(P - Y)) / 2 + dSp[ex]) * keep
        if not self.from_logits:
            return dp.astype(z.dtype)
        return _region_backward(dp, p, self.mode).astype(z.dtype)


class DiceLoss(_RegionLoss):
    """Dice loss (Milletari et al. 2016).  npunet's ``DiceLoss(smooth=1.0)``: per (n, c)
    d = (2*sum(p*y) + s) / (sum(p) + sum(y) + s); L = 1 - mean(d); p = sigmoid(z), y in {0, 1} of z's
    shape or (N, H, W).  SMP's ``DiceLoss(mode, classes, log_loss, from_logits, smooth, ignore_index,
    eps)``: see _RegionLoss (mode "binary" | "multilabel" (sigmoid per channel) | "multiclass" (softmax,
    int target (N, H, W))).
    """

    def _score(self, I, Sp, Sy):
        return (2 * I + self.smooth) / (Sp + Sy + self.smooth)

    def _score_grads(self, I, Sp, Sy):
        D = Sp + Sy + self.smooth
        return 2 / D, -(2 * I + self.smooth) / D ** 2

    def _smp_denominator(self, I, Sp, Sy):        # Tversky 0.5/0.5: I + (Sp - I)/2 + (Sy - I)/2 + s
        return I + 0.5 * (Sp - I) + 0.5 * (Sy - I) + self.smooth

    def _smp_denominator_grads(self):
        return 0.0, 0.5


class IoULoss(_RegionLoss):
    """IoU / Jaccard loss.  npunet's ``IoULoss(smooth=1.0)``: per (n, c) j = (sum(p*y) + s) /
    (sum(p) + sum(y) - sum(p*y) + s); L = 1 - mean(j).  SMP's ``JaccardLoss(mode, ...)`` signature
    as DiceLoss's (see _RegionLoss)."""

    def _score(self, I, Sp, Sy):
        return (I + self.smooth) / (Sp + Sy - I + self.smooth)

    def _score_grads(self, I, Sp, Sy):
        U = Sp + Sy - I + self.smooth
        num = I + self.smooth
        return 1 / U + num / U ** 2, -num / U ** 2

    def _smp_denominator(self, I, Sp, Sy):        # Tversky 1/1: I + (Sp - I) + (Sy - I) + s
        return I + (Sp - I) + (Sy - I) + self.smooth

    def _smp_denominator_grads(self):
        return -1.0, 1.0


JaccardLoss = IoULoss


# ================================================================== SSIM / MS-SSIM

def gaussian_window(size=11, sigma=1.5):
    """g_k proportional to exp(-(k - size//2)^2 / (2 sigma^2)), normalised to sum 1."""
    k = np.arange(size, dtype=np.float64) - size // 2
    g = np.exp(-k ** 2 / (2 * sigma ** 2))
    return g / g.sum()


def _filter_matrix(n, g):
    """(n - len(g) + 1, n) matrix of a valid 1-D correlation with g."""
    m = np.zeros((n - len(g) + 1, n))
    for i in range(m.shape[0]):
        m[i, i:i + len(g)] = g
    return m


class _Filter:
    """Separable valid Gaussian filter: F(A) = Gh @ A @ Gw^T on the last two axes."""

    def __init__(self, H, W, g):
        self.Gh, self.Gw = _filter_matrix(H, g), _filter_matrix(W, g)

    def __call__(self, A):
        return self.Gh @ A @ self.Gw.T

    def T(self, D):
        return self.Gh.T @ D @ self.Gw


def _ssim_forward(X, Y, g, C1, C2):
    """X, Y: (N, C, H, W) float64.  Returns (ssim (N, C), cs (N, C), cache)."""
    f = _Filter(X.shape[2], X.shape[3], g)
    mx, my = f(X), f(Y)
    sxx = f(X * X) - mx * mx
    syy = f(Y * Y) - my * my
    sxy = f(X * Y) - mx * my
    A, B = 2 * sxy + C2, sxx + syy + C2
    cs_map = A / B
    Ln, Ld = 2 * mx * my + C1, mx * mx + my * my + C1
    l_map = Ln / Ld
    ssim_map = l_map * cs_map
    cache = (f, X, Y, mx, my, A, B, cs_map, Ln, Ld, l_map)
    return ssim_map.mean(axis=(2, 3)), cs_map.mean(axis=(2, 3)), cache


def _ssim_backward(dssim, dcs, cache):
    """dssim, dcs: (N, C) gradients of the per-map means -> dX (N, C, H, W)."""
    f, X, Y, mx, my, A, B, cs_map, Ln, Ld, l_map = cache
    M = cs_map.shape[2] * cs_map.shape[3]
    g_ssim = dssim[:, :, None, None] / M
    g_cs = dcs[:, :, None, None] / M + g_ssim * l_map    # total d/d cs_map
    g_l = g_ssim * cs_map                                # d/d l_map
    dA, dB = g_cs / B, -g_cs * A / B ** 2
    dsxy, dsxx = 2 * dA, dB
    dmx = g_l * (2 * my / Ld - Ln * 2 * mx / Ld ** 2) - 2 * mx * dsxx - my * dsxy
    return f.T(dmx) + 2 * X * f.T(dsxx) + Y * f.T(dsxy)


def _avgpool2(X):
    """2x2 average pooling, stride 2; an odd side is zero-padded by one at both ends first and the zeros
    count (pytorch_msssim's avg_pool2d(padding=s % 2))."""
    ph, pw = X.shape[2] % 2, X.shape[3] % 2
    Xp = np.pad(X, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    Ho, Wo = (Xp.shape[2] - 2) // 2 + 1, (Xp.shape[3] - 2) // 2 + 1
    Xp = Xp[:, :, :2 * Ho, :2 * Wo]
    return Xp.reshape(X.shape[0], X.shape[1], Ho, 2, Wo, 2).mean(axis=(3, 5)), (ph, pw, X.shape)


def _avgpool2_backward(d, cache):
    ph, pw, shape = cache
    up = np.repeat(np.repeat(d, 2, axis=2), 2, axis=3) / 4
    full = np.zeros((shape[0], shape[1], shape[2] + 2 * ph, shape[3] + 2 * pw))
    full[:, :, :up.shape[2], :up.shape[3]] = up
    return full[:, :, ph:ph + shape[2], pw:pw + shape[3]]


def ssim(x, y, data_range=1.0, win_size=11, sigma=1.5):
    """Single-scale SSIM (Wang et al. 2004) of images x, y: (N, C, H, W); mean over everything."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if x.shape != y.shape or x.ndim != 4:
        raise ValueError(f"ssim: expected two (N, C, H, W) arrays of one shape, got {x.shape} and {y.shape}")
    if min(x.shape[2:]) < win_size:
        raise ValueError(f"ssim: images {x.shape[2:]} are smaller than the {win_size}-tap window")
    s, _, _ = _ssim_forward(x, y, gaussian_window(win_size, sigma), (0.01 * data_range) ** 2, (0.03 * data_range) ** 2)
    return float(s.mean())


class MSSSIMLoss(Loss):
    """L = 1 - MS-SSIM(sigmoid(z), y), data range 1 (Wang, Simoncelli & Bovik 2003, eq. 7; computed as
    pytorch_msssim does: valid Gaussian filtering, 2x2 average pooling between scales).

    z: (N, C, H, W) logits; target y in {0, 1} of the same shape.
    MS-SSIM = prod_{l<L} relu(cs_l)^{w_l} * relu(ssim_L)^{w_L} per (n, c), then the mean.
    weights: the per-scale exponents (default the 5 of Wang et al. 2003); pass fewer, e.g.
    ``weights=(0.5, 0.5)`` or ``scales=3``, for small images: the smaller side must exceed
    (win_size - 1) * 2^(scales - 1) (160 for 5 scales).
    """

    def __init__(self, weights=None, scales=None, win_size=11, sigma=1.5):
        if weights is None:
            weights = MS_SSIM_WEIGHTS if scales is None else MS_SSIM_WEIGHTS[:scales]
            if scales is not None and scales < 5:  # renormalise the truncated weights
                weights = tuple(w / sum(weights) for w in weights)
        self.weights = np.asarray(weights, np.float64)
        self.win_size, self.sigma = int(win_size), float(sigma)
        self.g = gaussian_window(self.win_size, self.sigma)

    def min_size(self):
        return (self.win_size - 1) * 2 ** (len(self.weights) - 1)

    def loss_forward(self, z, target, weight=None):
        _check_logits(self, z)
        if z.ndim != 4:
            raise ValueError(f"MSSSIMLoss: expected (N, C, H, W) logits, got {z.shape}")
        y = _check_binary_target(self, z, target).astype(np.float64)
        if min(z.shape[2:]) <= self.min_size():
            raise ValueError(f"MSSSIMLoss: {len(self.weights)} scales need the smaller image side > "
                             f"{self.min_size()}, got {z.shape[2:]}; use MSSSIMLoss(scales=k) with fewer scales")
        X = sigmoid(z.astype(np.float64))
        C1, C2 = 0.01 ** 2, 0.03 ** 2
        L = len(self.weights)
        caches, pools, vals = [], [], []
        Xl, Yl = X, y
        for l in range(L):
            s, cs, c = _ssim_forward(Xl, Yl, self.g, C1, C2)
            caches.append(c)
            vals.append(s if l == L - 1 else cs)
            if l < L - 1:
                Xl, pc = _avgpool2(Xl)
                Yl, _ = _avgpool2(Yl)
                pools.append(pc)
        V = np.stack(vals)                        # (L, N, C)
        R = np.maximum(V, 0)
        terms = R ** self.weights[:, None, None]
        ms = terms.prod(axis=0)                   # (N, C)
        return float(1 - ms.mean()), (z, X, V, R, terms, ms, caches, pools)

    def loss_backward(self, cache):
        z, X, V, R, terms, ms, caches, pools = cache
        L = len(self.weights)
        dms = -np.ones_like(ms) / ms.size
        dV = np.zeros_like(V)
        for l in range(L):
            others = np.prod(np.delete(terms, l, axis=0), axis=0) if L > 1 else np.ones_like(ms)
            w = self.weights[l]
            with np.errstate(divide="ignore", invalid="ignore"):
                dterm = np.where(R[l] > 0, w * R[l] ** (w - 1), 0.0)  # relu: no gradient below 0
            dV[l] = dms * others * dterm
        dX = None
        for l in reversed(range(L)):
            zeros = np.zeros_like(dV[l])
            dl = _ssim_backward(dV[l], zeros, caches[l]) if l == L - 1 else _ssim_backward(zeros, dV[l], caches[l])
            dX = dl if dX is None else dl + _avgpool2_backward(dX, pools[l])
        return (dX * X * (1 - X)).astype(z.dtype)


# ================================================================== combinations

class CombinedLoss(Loss):
    """Weighted sum of losses: L = sum_k w_k * L_k(z, target[, weight]).

    The weight map goes to the terms that accept one (cross-entropy, BCE); the others are unweighted.
    All terms must take the same kind of target.  ``last``: each term's value in the last forward.
    Ready-made hybrids: ``CombinedLoss.unet()`` (weighted CE), ``CombinedLoss.unetpp()``
    (BCE + Dice), ``CombinedLoss.unet3plus()`` (focal + MS-SSIM + IoU).
    """

    def __init__(self, terms):
        self.terms = [(l, float(w)) for l, w in terms]
        if not self.terms:
            raise ValueError("CombinedLoss: needs at least one (loss, weight) term")
        kinds = {l.target for l, _ in self.terms}
        if len(kinds) > 1:
            raise ValueError(f"CombinedLoss: the terms take different targets {sorted(kinds)} "
                             f"({', '.join(f'{type(l).__name__}: {l.target}' for l, _ in self.terms)})")
        self.target = kinds.pop()
        self.accepts_weight = any(l.accepts_weight for l, _ in self.terms)
        self.last = {}

    @classmethod
    def unet(cls):
        return cls([(CrossEntropyLoss(), 1.0)])

    @classmethod
    def unetpp(cls, smooth=1.0):
        return cls([(BCEWithLogitsLoss(), 1.0), (DiceLoss(smooth), 1.0)])

    @classmethod
    def unet3plus(cls, ms_ssim_scales=5, alpha=0.25, gamma=2.0):
        return cls([(FocalLoss(alpha, gamma), 1.0), (MSSSIMLoss(scales=ms_ssim_scales), 1.0), (IoULoss(), 1.0)])

    def loss_forward(self, z, target, weight=None):
        total, caches = 0.0, []
        for l, w in self.terms:
            v, c = l.loss_forward(z, target, weight if l.accepts_weight else None)
            self.last[type(l).__name__] = v
            caches.append(c)
            total += w * v
        return total, caches

    def loss_backward(self, caches):
        return sum(w * l.loss_backward(c) for (l, w), c in zip(self.terms, caches))


class DeepSupervisionLoss(Loss):
    """Mean of one loss over several heads: L = (1/K) sum_k loss(z_k, target[, weight]).
    forward(list of logits, ...); backward() -> list of the heads' gradients.
    ``values``: each head's loss in the last forward."""

    def __init__(self, loss):
        self.loss = loss
        self.target, self.accepts_weight = loss.target, loss.accepts_weight
        self.values = []

    def loss_forward(self, zs, target, weight=None):
        if not isinstance(zs, (list, tuple)) or not zs:
            raise TypeError("DeepSupervisionLoss: expected a non-empty list of head logits "
                            f"(the model's deep-supervision outputs), got {type(zs).__name__}")
        pairs = [self.loss.loss_forward(z, target, weight) for z in zs]
        self.values = [v for v, _ in pairs]
        return float(np.mean(self.values)), [c for _, c in pairs]

    def loss_backward(self, caches):
        return [self.loss.loss_backward(c) / len(caches) for c in caches]


class BCELoss(Loss):
    """Binary cross-entropy on probabilities, as PyTorch's nn.BCELoss (reduction='mean'):
    L = mean(-(y log p + (1 - y) log(1 - p))), each log clamped at -100.

    p: probabilities in [0, 1], any shape (UNet 3+'s classification-guided module: (N, 2));
    target: the same shape, in [0, 1].  dL/dp = (p - y) / max(p (1 - p), 1e-12) / M (PyTorch's backward).
    """

    def loss_forward(self, p, target, weight=None):
        if not isinstance(p, np.ndarray) or p.dtype not in (np.float32, np.float64):
            raise TypeError(f"BCELoss: expected float32/float64 probabilities as a numpy array, got {type(p).__name__}")
        y = np.asarray(target)
        if y.shape != p.shape:
            raise ValueError(f"BCELoss: target shape {y.shape} does not match the probabilities {p.shape}")
        if p.size == 0:
            raise ValueError("BCELoss: empty input")
        if not (np.all((p >= 0) & (p <= 1)) and np.all((y >= 0) & (y <= 1))):
            raise ValueError("BCELoss: probabilities and targets must lie in [0, 1] (pass logits to BCEWithLogitsLoss)")
        p64, y64 = p.astype(np.float64), y.astype(np.float64)
        with np.errstate(divide="ignore"):
            per = -(y64 * np.maximum(np.log(p64), -100) + (1 - y64) * np.maximum(np.log(1 - p64), -100))
        return float(per.mean()), (p, y64)

    def loss_backward(self, cache):
        p, y = cache
        p64 = p.astype(np.float64)
        return ((p64 - y) / np.maximum(p64 * (1 - p64), 1e-12) / p.size).astype(p.dtype)
