"""Exercise 4, bilinear up-sampling
(lessons/exercises/04_bilinear.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

from ..spec import Exercise, arr, unpack


def _bilinear_ref():
    from ...backends import reference as R

    def forward(x, scale=2, align_corners=False):
        H, W = x.shape[2:]
        return R.interpolate_forward(x, (H * scale, W * scale), "bilinear", align_corners, (scale, scale))
    return SimpleNamespace(bilinear_forward=forward, bilinear_backward=R.interpolate_backward)


def _bilinear_fwd(impl, inp, case):
    out, cache = unpack(impl.bilinear_forward(inp["x"], scale=case["scale"], align_corners=case["align_corners"]),
                         2, "bilinear_forward")
    return {"out": out}, cache


def _bilinear_bwd(impl, cache, d):
    return {"dx": impl.bilinear_backward(d["out"], cache)}


EXERCISE = Exercise(
    name="bilinear",
    file="04_bilinear.py",
    title="bilinear up-sampling",
    functions=("bilinear_forward", "bilinear_backward"),
    reference=_bilinear_ref,
    cases=[dict(N=2, C=2, H=4, W=5, scale=2, align_corners=False), dict(N=1, C=2, H=3, W=4, scale=3, align_corners=False),
           dict(N=2, C=1, H=4, W=3, scale=2, align_corners=True)],
    make=lambda rng, N, C, H, W, scale, align_corners: dict(x=arr(rng, N, C, H, W)),
    forward=_bilinear_fwd,
    backward=_bilinear_bwd,
    hints={"out": "out = My @ x @ Mx^T; align_corners=False samples output pixel i at its half-pixel centre, src = (i + 0.5) / scale - 0.5 "
          "clamped at 0; align_corners=True at src = i * (H - 1) / (H_out - 1)",
          "dx": "a linear map's backward is its transpose: dx = My^T @ dout @ Mx"},
)
