"""Exercise 7, Dice loss
(lessons/exercises/07_dice.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

import numpy as np

from ..spec import Exercise, arr, unpack


def _dice_ref():
    from ...losses import DiceLoss

    def forward(logits, target, smooth=1.0):
        loss = DiceLoss(smooth=smooth)
        return loss.forward(logits, target), loss
    return SimpleNamespace(dice_loss_forward=forward, dice_loss_backward=lambda loss: loss.backward())


def _dice_make(rng, N, H, W, smooth):
    return dict(logits=2 * arr(rng, N, 1, H, W), target=(rng.random((N, 1, H, W)) < 0.4).astype(np.float64))


def _dice_fwd(impl, inp, case):
    loss, cache = unpack(impl.dice_loss_forward(inp["logits"], inp["target"], smooth=case["smooth"]), 2,
                          "dice_loss_forward")
    return {"loss": np.float64(loss)}, cache


def _dice_bwd(impl, cache, d):
    return {"dlogits": d["loss"] * np.asarray(impl.dice_loss_backward(cache))}


EXERCISE = Exercise(
    name="dice",
    file="07_dice.py",
    title="Dice loss",
    functions=("dice_loss_forward", "dice_loss_backward"),
    reference=_dice_ref,
    cases=[dict(N=2, H=5, W=6, smooth=1.0), dict(N=3, H=4, W=4, smooth=0.5)],
    make=_dice_make,
    forward=_dice_fwd,
    backward=_dice_bwd,
    hints={"loss": "p = sigmoid(logits); per image d = (2 sum(p*y) + s) / (sum(p) + sum(y) + s); loss = 1 - mean(d)",
          "dlogits": "dd/dp = (2 y (Sp + Sy + s) - (2 I + s)) / (Sp + Sy + s)^2 per image, then the mean's "
          "1/N, the minus sign, and dp/dz = p (1 - p)"},
)
