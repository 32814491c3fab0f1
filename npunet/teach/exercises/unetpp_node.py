"""Exercise 8, a U-Net++ node and its summed gradients
(lessons/exercises/08_unetpp_node.py): the reference built from npunet's ops, the cases and the hints."""
from types import SimpleNamespace

import numpy as np

from ..spec import Exercise, arr, unpack, ShapeError, params, seeded, conv_block


def _unetpp_ref():
    from ... import nn

    def node_forward(same_row, below, up, conv):
        cat = nn.Concat()
        return conv(cat(*same_row, up(below))), (cat, up, conv)

    def node_backward(dout, cache):
        cat, up, conv = cache
        parts = cat.backward(conv.backward(dout))
        return list(parts[:-1]), up.backward(parts[-1])

    def row_forward(x00, x10, x11, ups, convs):
        X = {(0, 0): x00, (1, 0): x10, (1, 1): x11}
        caches = {}
        for j in (1, 2):
            X[0, j], caches[j] = node_forward([X[0, k] for k in range(j)], X[1, j - 1], ups[j - 1], convs[j - 1])
        return X[0, 2], caches

    def row_backward(dx02, caches):
        dX = {(0, 2): dx02}
        for j in (2, 1):                                 # the mirror image; a map's gradients accumulate
            same, below = node_backward(dX.pop((0, j)), caches[j])
            for k, g in enumerate(same):
                dX[0, k] = dX.get((0, k), 0) + g
            dX[1, j - 1] = below
        return dX[0, 0], dX[1, 0], dX[1, 1]
    return SimpleNamespace(node_forward=node_forward, node_backward=node_backward, row_forward=row_forward,
                           row_backward=row_backward)


def _unetpp_make(rng, N, f0, f1, H, seed, part):
    from ... import nn
    with seeded(seed):
        ups = [nn.ConvTranspose2d(f1, f0, 2, stride=2).to(np.float64) for _ in range(2)]
        convs = [conv_block(nn, 2 * f0, f0), conv_block(nn, 3 * f0, f0)]
    return dict(x00=arr(rng, N, f0, H, H), x10=arr(rng, N, f1, H // 2, H // 2), x11=arr(rng, N, f1, H // 2, H // 2),
                ups=ups, convs=convs)


def _unetpp_fwd(impl, inp, case):
    if case["part"] == "node":
        out, cache = unpack(impl.node_forward([inp["x00"]], inp["x10"], inp["ups"][0], inp["convs"][0]), 2,
                             "node_forward")
        return {"x01": out}, (cache, inp)
    out, cache = unpack(impl.row_forward(inp["x00"], inp["x10"], inp["x11"], inp["ups"], inp["convs"]), 2,
                         "row_forward")
    return {"x02": out}, (cache, inp)


def _unetpp_bwd(impl, state, d):
    cache, inp = state
    if "x01" in d:
        same, dx10 = unpack(impl.node_backward(d["x01"], cache), 2, "node_backward")
        if not isinstance(same, (list, tuple)) or len(same) != 1:
            raise ShapeError("node_backward must return (list of the same-row gradients, d_below): one per same-row input")
        grads = {"dx00": same[0], "dx10": dx10}
        grads.update(params("ups[0]", inp["ups"][0]))
        grads.update(params("convs[0]", inp["convs"][0]))
        return grads
    dx00, dx10, dx11 = unpack(impl.row_backward(d["x02"], cache), 3, "row_backward")
    grads = {"dx00": dx00, "dx10": dx10, "dx11": dx11}
    for k in range(2):
        grads.update(params(f"ups[{k}]", inp["ups"][k]))
        grads.update(params(f"convs[{k}]", inp["convs"][k]))
    return grads


EXERCISE = Exercise(
    name="unetpp_node",
    file="08_unetpp_node.py",
    title="a U-Net++ node and its summed gradients",
    functions=("node_forward", "node_backward", "row_forward", "row_backward"),
    reference=_unetpp_ref,
    cases=[dict(N=2, f0=2, f1=3, H=6, seed=1, part="node"), dict(N=2, f0=2, f1=3, H=6, seed=2, part="row")],
    make=_unetpp_make,
    forward=_unetpp_fwd,
    backward=_unetpp_bwd,
    hints={"x01": "X^{0,1} = conv(concat([X^{0,0}, up(X^{1,0})])): the same-row maps first, the up-sampled one last",
          "x02": "X^{0,2} = conv(concat([X^{0,0}, X^{0,1}, up(X^{1,1})]))",
          "dx00": "X^{0,0} feeds X^{0,1} and X^{0,2}: its gradient is the SUM of what both consumers send back",
          "dx10": "split dcat by channels (the last block belongs to up(X^{1,0})), then up.backward",
          "dx11": "the last channel block of X^{0,2}'s concat, through ups[1].backward",
          "param": "call each module's backward exactly once per forward: it adds into its parameters' .grad"},
)
