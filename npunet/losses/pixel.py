"""Per-pixel losses: cross-entropy (softmax over classes), BCE with logits, focal, and BCE on
probabilities."""
import numpy as np

from ..functional import sigmoid
from .base import (SMP_MODES, Loss, _check_binary_target, _check_class_target, _check_logits, _check_weight,
                   _reduce, _reduction, _upstream, log_softmax)


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
        if self.mode not in SMP_MODES:
            raise ValueError(f"FocalLoss: mode must be one of {SMP_MODES}, got {self.mode!r}")
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
