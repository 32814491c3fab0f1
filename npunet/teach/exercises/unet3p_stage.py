"""Exercise 9, a UNet 3+ decoder stage
(lessons/exercises/09_unet3p_stage.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

import numpy as np

from ..spec import Exercise, arr, unpack, ShapeError, params, seeded, conv_block


def _unet3p_ref():
    from ...models.unet3plus import Branch, Fuse

    def stage_forward(enc, dec, convs, fuse):
        i = len(enc)
        branches = []
        for k, (x, conv) in enumerate(zip(list(enc) + list(dec), convs), start=1):
            resample = ("pool", 2 ** (i - k)) if k < i else ("up", 2 ** (k - i)) if k > i else None
            b = Branch(1, 1, resample).to(np.float64)
            b.conv, b.bn = conv[0], conv[1]                  # the given modules inside the library's Branch
            branches.append(b)
        f = Fuse(len(convs), 1).to(np.float64)
        f.conv, f.bn = fuse[0], fuse[1]
        parts = [b(x) for b, x in zip(branches, list(enc) + list(dec))]
        return f(*parts), (branches, f, i)

    def stage_backward(dout, cache):
        branches, f, i = cache
        d = [b.backward(g) for b, g in zip(branches, f.backward(dout))]
        return d[:i], d[i:]
    return SimpleNamespace(stage_forward=stage_forward, stage_backward=stage_backward)


def _unet3p_make(rng, N, filters, cat, H1, stage, seed):
    from ... import nn
    with seeded(seed):
        convs = [conv_block(nn, f, cat) for f in filters]
        fuse = conv_block(nn, len(filters) * cat, len(filters) * cat)
    maps = [arr(rng, N, f, H1 >> k, H1 >> k) for k, f in enumerate(filters)]
    return dict(enc=maps[:stage], dec=maps[stage:], convs=convs, fuse=fuse)


def _unet3p_fwd(impl, inp, case):
    out, cache = unpack(impl.stage_forward(inp["enc"], inp["dec"], inp["convs"], inp["fuse"]), 2, "stage_forward")
    return {"hd": out}, (cache, inp)


def _unet3p_bwd(impl, state, d):
    cache, inp = state
    d_enc, d_dec = unpack(impl.stage_backward(d["hd"], cache), 2, "stage_backward")
    if len(d_enc) != len(inp["enc"]) or len(d_dec) != len(inp["dec"]):
        raise ShapeError(f"stage_backward must return ({len(inp['enc'])} encoder gradients, {len(inp['dec'])} decoder "
                     f"gradients), got ({len(d_enc)}, {len(d_dec)})")
    grads = {f"d_enc[{k}]": g for k, g in enumerate(d_enc)}
    grads.update({f"d_dec[{k}]": g for k, g in enumerate(d_dec)})
    for k, conv in enumerate(inp["convs"]):
        grads.update(params(f"convs[{k}]", conv))
    grads.update(params("fuse", inp["fuse"]))
    return grads


EXERCISE = Exercise(
    name="unet3p_stage",
    file="09_unet3p_stage.py",
    title="a UNet 3+ decoder stage",
    functions=("stage_forward", "stage_backward"),
    reference=_unet3p_ref,
    cases=[dict(N=2, filters=(2, 3, 2, 3, 2), cat=2, H1=16, stage=2, seed=3),
           dict(N=2, filters=(2, 2, 3, 2, 3), cat=2, H1=16, stage=4, seed=4)],
    make=_unet3p_make,
    forward=_unet3p_fwd,
    backward=_unet3p_bwd,
    hints={"hd": "stage i: encoder map k < i max-pooled by 2^(i-k), k = i as is, decoder map k > i bilinear "
          "up-sampled by 2^(k-i) (align_corners=False); each through its conv block, concatenated in "
          "order k = 1..5, then the fuse block",
          "d_enc": "split dcat into the five blocks, each back through its conv block, then the max-pool's backward",
          "d_dec": "each decoder block back through its conv block, then the bilinear backward",
          "param": "call each module's backward exactly once per forward: it adds into its parameters' .grad"},
)
