"""Exercise 1, convolution
(lessons/exercises/01_conv2d.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

from ..spec import Exercise, arr, unpack


def _conv_ref():
    from ...backends import reference as R
    return SimpleNamespace(conv2d_forward=lambda x, w, b, stride=1, padding=0: R.conv2d_forward(x, w, b, stride, padding),
                           conv2d_backward=R.conv2d_backward)


def _conv_make(rng, N, C, H, W, O, k, stride, padding):
    return dict(x=arr(rng, N, C, H, W), w=arr(rng, O, C, k, k), b=arr(rng, O))


def _conv_fwd(impl, inp, case):
    out, cache = unpack(impl.conv2d_forward(inp["x"], inp["w"], inp["b"], stride=case["stride"],
                                             padding=case["padding"]), 2, "conv2d_forward")
    return {"out": out}, cache


def _conv_bwd(impl, cache, d):
    dx, dw, db = unpack(impl.conv2d_backward(d["out"], cache), 3, "conv2d_backward")
    return {"dx": dx, "dw": dw, "db": db}


EXERCISE = Exercise(
    name="conv2d",
    file="01_conv2d.py",
    title="convolution",
    functions=("conv2d_forward", "conv2d_backward"),
    reference=_conv_ref,
    cases=[dict(N=2, C=3, H=7, W=6, O=4, k=3, stride=1, padding=1), dict(N=1, C=2, H=8, W=9, O=3, k=3, stride=2, padding=0),
           dict(N=2, C=2, H=6, W=5, O=3, k=2, stride=2, padding=1)],
    make=_conv_make,
    forward=_conv_fwd,
    backward=_conv_bwd,
    hints={"out": "out[n, o, i, j] = sum over c, u, v of x_pad[n, c, i*s + u, j*s + v] * w[o, c, u, v] + b[o], "
          "H_out = (H + 2p - k) // s + 1; a cross-correlation (the kernel is not flipped)",
          "dx": "dcols = W^T @ dout, then col2im: overlapping patches ADD their gradients, and the padding "
          "border is cut off at the end",
          "dw": "dW = dout @ cols^T: every image of the batch used the same W, so their contributions add",
          "db": "db[o] = dout[:, o] summed over the batch and all output pixels"},
)
