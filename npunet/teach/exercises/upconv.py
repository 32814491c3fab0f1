"""Exercise 3, up-convolution
(lessons/exercises/03_upconv.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

from ..spec import Exercise, arr, unpack


def _upconv_ref():
    from ...backends import reference as R
    return SimpleNamespace(upconv_forward=lambda x, w, b, stride=2: R.conv_transpose2d_forward(x, w, b, stride),
                           upconv_backward=R.conv_transpose2d_backward)


def _upconv_make(rng, N, C, H, W, O, k, stride):
    return dict(x=arr(rng, N, C, H, W), w=arr(rng, C, O, k, k), b=arr(rng, O))


def _upconv_fwd(impl, inp, case):
    out, cache = unpack(impl.upconv_forward(inp["x"], inp["w"], inp["b"], stride=case["stride"]), 2, "upconv_forward")
    return {"out": out}, cache


def _upconv_bwd(impl, cache, d):
    dx, dw, db = unpack(impl.upconv_backward(d["out"], cache), 3, "upconv_backward")
    return {"dx": dx, "dw": dw, "db": db}


EXERCISE = Exercise(
    name="upconv",
    file="03_upconv.py",
    title="up-convolution",
    functions=("upconv_forward", "upconv_backward"),
    reference=_upconv_ref,
    cases=[dict(N=2, C=3, H=4, W=5, O=2, k=2, stride=2), dict(N=1, C=2, H=3, W=3, O=3, k=3, stride=2),
           dict(N=2, C=2, H=3, W=4, O=2, k=2, stride=1)],
    make=_upconv_make,
    forward=_upconv_fwd,
    backward=_upconv_bwd,
    hints={"out": "every input pixel stamps w[c] (C_out, k, k) scaled by x[n, c, i, j] at (i*s, j*s), and the "
          "stamps add; H_out = (H - 1) * s + k; w has PyTorch's layout (C_in, C_out, k, k)",
          "dx": "dx[n, c, i, j] = sum over o, u, v of dout[n, o, i*s + u, j*s + v] * w[c, o, u, v]: a "
          "convolution of dout",
          "dw": "dw[c, o, u, v] = sum over n, i, j of x[n, c, i, j] * dout[n, o, i*s + u, j*s + v]",
          "db": "db[o] = dout[:, o] summed over the batch and all output pixels"},
)
