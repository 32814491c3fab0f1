"""Combinations of losses: a weighted sum (the papers' hybrids) and deep supervision's mean over heads."""
import numpy as np

from .base import Loss
from .pixel import BCEWithLogitsLoss, CrossEntropyLoss, FocalLoss
from .region import DiceLoss, IoULoss
from .structure import MSSSIMLoss


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
