"""Region losses: soft Dice and IoU (Jaccard), npunet's and SMP's signatures."""
import numpy as np

from ..functional import sigmoid
from .base import SMP_MODES, Loss, _check_binary_target, _check_class_target, _check_logits, softmax


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

    MODES = SMP_MODES
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
