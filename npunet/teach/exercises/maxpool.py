"""Exercise 2, max-pool
(lessons/exercises/02_maxpool.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

from ..spec import Exercise, arr, unpack


def _pool_ref():
    from ...backends import reference as R
    return SimpleNamespace(maxpool_forward=lambda x, kernel_size=2, stride=2: R.maxpool2d_forward(x, kernel_size, stride),
                           maxpool_backward=R.maxpool2d_backward)


def _pool_fwd(impl, inp, case):
    out, cache = unpack(impl.maxpool_forward(inp["x"], kernel_size=case["k"], stride=case["stride"]), 2,
                         "maxpool_forward")
    return {"out": out}, cache


def _pool_bwd(impl, cache, d):
    return {"dx": impl.maxpool_backward(d["out"], cache)}


EXERCISE = Exercise(
    name="maxpool",
    file="02_maxpool.py",
    title="max-pool",
    functions=("maxpool_forward", "maxpool_backward"),
    reference=_pool_ref,
    cases=[dict(N=2, C=3, H=8, W=6, k=2, stride=2), dict(N=1, C=2, H=7, W=9, k=2, stride=2),
           dict(N=2, C=2, H=7, W=7, k=3, stride=2)],
    make=lambda rng, N, C, H, W, k, stride: dict(x=arr(rng, N, C, H, W)),
    forward=_pool_fwd,
    backward=_pool_bwd,
    hints={"out": "H_out = (H - k) // s + 1 (floor: an odd last row is dropped); the max over each k x k window",
          "dx": "each window's gradient goes to the pixel that was its maximum, 0 everywhere else; with "
          "overlapping windows (k > s) a pixel can win twice and its gradients add"},
)
