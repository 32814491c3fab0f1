"""Exercise 6, copy, crop and concatenate
(lessons/exercises/06_crop_concat.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

from ..spec import Exercise, arr, unpack


def _crop_ref():
    from ...backends import reference as R
    return SimpleNamespace(crop_concat_forward=R.crop_concat_forward, crop_concat_backward=R.crop_concat_backward)


def _crop_make(rng, N, Cs, Hs, Ws, Cx, H, W):
    return dict(skip=arr(rng, N, Cs, Hs, Ws), x=arr(rng, N, Cx, H, W))


def _crop_fwd(impl, inp, case):
    out, cache = unpack(impl.crop_concat_forward(inp["skip"], inp["x"]), 2, "crop_concat_forward")
    return {"out": out}, cache


def _crop_bwd(impl, cache, d):
    dskip, dx = unpack(impl.crop_concat_backward(d["out"], cache), 2, "crop_concat_backward")
    return {"dskip": dskip, "dx": dx}


EXERCISE = Exercise(
    name="crop_concat",
    file="06_crop_concat.py",
    title="copy, crop and concatenate",
    functions=("crop_concat_forward",
    "crop_concat_backward"),
    reference=_crop_ref,
    cases=[dict(N=2, Cs=2, Hs=9, Ws=9, Cx=3, H=5, W=5), dict(N=1, Cs=3, Hs=8, Ws=7, Cx=2, H=5, W=4)],
    make=_crop_make,
    forward=_crop_fwd,
    backward=_crop_bwd,
    hints={"out": "centre crop: start at ((Hs - H) // 2, (Ws - W) // 2), then [skip, x] on the channel axis "
          "(skip first, as the paper's figure)",
          "dskip": "the first Cs channels of dout go back into the cropped window; the border the crop cut off "
          "gets 0",
          "dx": "the last Cx channels of dout"},
)
