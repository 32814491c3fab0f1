"""The U-Net Explainer: one self-contained HTML page that walks through a real model's forward and
backward pass, after CNN Explainer (Wang et al., IEEE VIS 2020), for the whole U-Net family.

``explain(model, image, path)`` runs the model once on ``image`` with every leaf call recorded
(the trace npunet.summary and npunet.viz.architecture use, here with real arrays), runs the loss and
``model.backward`` with every leaf's incoming and outgoing gradient recorded, and writes a page
generated from that graph: the blocks are the model's own children (``block_graph``), the overview
is ``draw_architecture`` as SVG, every number shown is the model's float32 value.  No network, no
library: the page's JavaScript is in explainer/page.py, images are base64 PNGs, exact numbers base64
float32.  This module assembles the data; the parts are in npunet/viz/explainer/ (encode: arrays as
PNG/float32; trace: the recorded passes and the graph of blocks; ops: one operation's window; page:
the HTML writer).
"""
import io
import math

import numpy as np

from .. import nn
from .explainer.encode import (GRID_PIXELS, MAX_TILE, SNAP_PIXELS, _b64, _cnorm, _f32, _grid, _levels,  # noqa: F401
                               _map, _png, _png_indexed, _shrink)
from .explainer.ops import OP_FLOATS, OP_KERNEL_FLOATS, _op_view, _pick_point, _region  # noqa: F401
from .explainer.page import _CSS, _JS, _TEMPLATE, render  # noqa: F401
from .explainer.trace import (_block_depth, _center_crop, _child, _Graph, _heads, _loss_and_grad,  # noqa: F401
                              _probability, _Recorder, _rf_step, _set_structure)


# ------------------------------------------------------------------ the data behind the page

def _as_input(model, image):
    x = np.asarray(image)
    if x.ndim == 2:
        x = x[None, None]
    elif x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        raise ValueError(f"npunet.viz.explain: image must be (H, W), (C, H, W) or (1, C, H, W), got shape {np.shape(image)}")
    if x.dtype.kind not in "biuf":
        raise TypeError(f"npunet.viz.explain: image holds {x.dtype} values; expected a numeric array")
    return np.ascontiguousarray(x, dtype=model.dtype or np.float32)


def explainer_data(model, image, mask=None, labels=None, weight_map=True, snapshots=None, title=None, note=None):
    """Everything the page shows, as a JSON-able dict (``explain`` writes it into the page).

    image: (H, W), (C, H, W) or (1, C, H, W); mask: (H, W) ground truth (0/1, or class indices);
    labels: (H, W) instance labels (0 background) for the U-Net weight map (Ronneberger et al. 2015,
    eq. 2) and, without a mask, the mask labels > 0.  Without either the loss uses the model's own
    thresholded prediction as its target (the page says so).
    snapshots: [(label, state_dict)] of the same model during training, for the training slider.
    """
    modes = [(m, m.training) for m in model.modules()]
    try:
        return _explainer_data(model, image, mask, labels, weight_map, snapshots, title, note)
    finally:
        for m, t in modes:    # the model's own train/eval modes back
            object.__setattr__(m, "training", t)


def _explainer_data(model, image, mask, labels, weight_map, snapshots, title, note):
    from ..data import weight_map as make_weight_map
    from .architecture import draw_architecture
    x = _as_input(model, image)
    model.eval()
    out_eval = model(x)
    prob = _probability(model, out_eval)
    target_note = ""
    if mask is None and labels is not None:
        mask = (np.asarray(labels) > 0).astype(np.int64)
    if mask is None:
        mask = (prob > 0.5).astype(np.int64)
        mask = np.pad(mask, [((x.shape[2] - mask.shape[0]) // 2,) * 2, ((x.shape[3] - mask.shape[1]) // 2,) * 2])
        target_note = ("No ground truth was given: the loss uses the model's own thresholded prediction as its target, "
                       "so the gradients show what would make the model more sure of what it already predicts.")
    mask = np.asarray(mask).astype(np.int64)
    if mask.shape != x.shape[2:]:
        raise ValueError(f"npunet.viz.explain: mask has shape {mask.shape}, the image is {x.shape[2:]}")
    wmap = None
    if labels is not None and weight_map:
        wmap = make_weight_map(np.asarray(labels), mask=(mask > 0)).astype(np.float64)

    # the recorded forward and backward: without the weight map (the toggle), then with it.  Only the
    # last pass is kept whole; of the first, the per-pixel gradient norms of each block (memory).
    passes = {}
    for key, w in (("plain", None), ("wm", wmap)) if wmap is not None else (("plain", None),):
        _set_structure(model, True)
        rec = _Recorder(model)
        out = rec.forward(x)
        value, d, dlogits = _loss_and_grad(model, out, mask, w)
        model.zero_grad()
        g = _Graph(model, rec, x)
        keep_out = set(g.last_call.values()) | {i for i, (m, _, _) in enumerate(rec.calls)
                                                 if isinstance(m, (nn.Conv2d, nn.MaxPool2d, nn.ConvTranspose2d, nn.Upsample))}
        keep_in = {i for i, (_, ins, _) in enumerate(rec.calls)      # calls that read a map from another block
                   if any(isinstance(a, np.ndarray) and g.producer.get(id(a)) is not None
                          and (g.producer[id(a)] == -1 or g.block_of[g.producer[id(a)]] != g.block_of[i]) for a in ins)}
        rec.backward(d, keep_out, keep_in)
        norms = {b: _cnorm(np.asarray(rec.grad_out[i])[0]) for b, i in g.last_call.items() if i in rec.grad_out}
        passes[key] = (norms, value, dlogits)
        del out, d
    model.zero_grad()
    loss_value, dlogits = passes[key][1], passes[key][2]

    blocks = []
    level_of = {}
    H0 = x.shape[2]
    for b in g.order:
        last = g.last_call[b]
        y = g.block_output(b)
        yb = np.asarray(y)[0]
        child = _child(model, b)
        size, jump = g.rf_of[id(y)]
        lvl = math.log2(H0 / y.shape[2]) if y.shape[2] else 0
        level_of[b] = lvl
        leaves = [dict(name=g.leaf_names[i], cls=type(g.calls[i][0]).__name__, shape=list(g.calls[i][2].shape))
                  for i in range(len(g.calls)) if g.block_of[i] == b]
        info = dict(name=b, cls=type(child).__name__, params=int(child.num_parameters()),
                    in_shapes=[list(a.shape) for a, _ in g.block_inputs(b)], in_from=[s for _, s in g.block_inputs(b)],
                    out_shape=list(y.shape), rf=None if not math.isfinite(size) else round(size, 2),
                    jump=jump, level=lvl, leaves=leaves, features=_grid(yb, "viridis"))
        # copy and crop: a concatenation of a map from outside (the skip) with one made in the block
        for i in range(len(g.calls)):
            m, ins, o = g.calls[i]
            if g.block_of[i] == b and isinstance(m, (nn.CropConcat, nn.Concat)) and len(ins) == 2:
                skip, up = np.asarray(ins[0])[0], np.asarray(ins[1])[0]
                H, W = up.shape[1:]
                t, l = (skip.shape[1] - H) // 2, (skip.shape[2] - W) // 2
                info["crop"] = dict(layer=g.leaf_names[i], skip_shape=list(ins[0].shape), up_shape=list(ins[1].shape),
                                    skip_from=g.block_of[g.producer.get(id(ins[0]), -1)]
                                    if g.producer.get(id(ins[0]), -1) >= 0 else "input",
                                    top=t, left=l, h=H, w=W, skip=_map(skip[0], "viridis"), up=_map(up[0], "viridis"))
                break
        # one operation of each kind in the block: the first of each
        ops, kinds = [], set()
        for i in range(len(g.calls)):
            if g.block_of[i] != b:
                continue
            m, ins, o = g.calls[i]
            v = _op_view(m, g.leaf_names[i], ins, o, rec.grad_out.get(i))
            if v is not None and (v["kind"], tuple(v["in_shape"]), tuple(v["out_shape"])) not in kinds:
                kinds.add((v["kind"], tuple(v["in_shape"]), tuple(v["out_shape"])))
                ops.append(v)
        info["ops"] = ops
        # backward: the gradient reaching the block's output, and where it came from
        gy = rec.grad_out.get(last)
        if gy is not None:
            gy0 = np.asarray(gy)[0]
            info["grad"] = _grid(gy0, "RdBu_r", symmetric=True)
            info["grad_norm"] = float(np.sqrt((np.asarray(gy, np.float64) ** 2).sum()))
            norms = {key: p[0].get(b) for key, p in passes.items()}
            hi = max(float(n.max()) for n in norms.values() if n is not None) or 1.0
            info["grad_map"] = {k: _map(n, "magma", 0.0, hi) for k, n in norms.items() if n is not None}
            info["grad_norms"] = {k: float(np.sqrt((n ** 2).sum())) for k, n in norms.items() if n is not None}
            contribs = []
            for ci, pos, cb in g.block_consumers(b):
                gi = rec.grad_in.get(ci)
                if gi is None or pos >= len(gi) or gi[pos] is None:
                    continue
                part = np.asarray(gi[pos])[0]
                contribs.append(dict(via=g.leaf_names[ci], block=cb, norm=float(np.sqrt((part.astype(np.float64) ** 2).sum())),
                                     part=part))
            if len(contribs) > 1:
                total = sum(c["part"].astype(np.float64) for c in contribs)
                hi = max(float(_cnorm(c["part"]).max()) for c in contribs) or 1.0
                for c in contribs:
                    c["map"] = _map(_cnorm(c.pop("part")), "magma", 0.0, hi)
                info["contributions"] = contribs
                info["contrib_sum_error"] = float(np.abs(total - gy0).max())
                info["contrib_sum_map"] = _map(_cnorm(total), "magma", 0.0, float(_cnorm(total).max()) or 1.0)
            # the gradients this block sends back to each of its inputs (UNet 3+'s five branches)
            sent = []
            for a, src in g.block_inputs(b):
                tot = None
                for ci, pos in g.consumers.get(id(a), []):
                    if g.block_of[ci] == b and ci in rec.grad_in and pos < len(rec.grad_in[ci]) \
                            and rec.grad_in[ci][pos] is not None:
                        part = np.asarray(rec.grad_in[ci][pos], np.float64)
                        tot = part if tot is None else tot + part
                if tot is not None:
                    sent.append(dict(to=src, shape=list(a.shape), norm=float(np.sqrt((tot ** 2).sum())), cn=_cnorm(tot[0])))
            if len(sent) > 1:
                hi = max(float(s_["cn"].max()) for s_ in sent) or 1.0
                for s_ in sent:
                    s_["map"] = _map(s_.pop("cn"), "magma", 0.0, hi)
                info["sent"] = sent
            else:
                for s_ in sent:
                    s_.pop("cn")
        blocks.append(info)

    # overview figure: the model's own architecture drawing, as SVG with clickable boxes
    import matplotlib
    import matplotlib.pyplot as plt
    # text as SVG text (small, selectable); set and restored by hand: rc_context would also restore
    # the backend and so lose a notebook's inline figures
    keys = {"svg.fonttype": "none", "svg.hashsalt": "npunet"}
    old = {k: matplotlib.rcParams[k] for k in keys}
    try:
        matplotlib.rcParams.update(keys)
        fig = draw_architecture(model, x.shape, depth=_block_depth(model))
        buf = io.StringIO()
        fig.savefig(buf, format="svg", bbox_inches="tight")
        plt.close(fig)
    finally:
        matplotlib.rcParams.update(old)
    svg = buf.getvalue()
    svg = svg[svg.index("<svg"):]
    a, b = svg.find("<metadata>"), svg.find("</metadata>")
    if a >= 0 and b > a:      # matplotlib's RDF block: a date and links, nothing to show
        svg = svg[:a] + svg[b + len("</metadata>"):]

    img = np.asarray(x[0], np.float64)
    H, W = prob.shape
    gt = _center_crop(mask, H, W)
    pred = (prob > 0.5).astype(np.int64)
    gt_fg = (gt > 0).astype(np.int64)
    err = np.full((H, W, 3), 255, np.uint8)
    err[(pred == 1) & (gt_fg == 1)] = (200, 200, 200)
    err[(pred == 1) & (gt_fg == 0)] = (214, 39, 40)
    err[(pred == 0) & (gt_fg == 1)] = (31, 119, 180)
    dl = np.asarray(dlogits, np.float64)[0]
    images = dict(input=_map(img.mean(axis=0), "gray"), prob=_map(prob, "viridis", 0.0, 1.0),
                  truth=_map(gt_fg, "gray", 0.0, 1.0), error=dict(png=_png(err), shape=[H, W]),
                  out_shape=[H, W], in_shape=list(x.shape))
    out_grad = {}
    for key, (_, _, dlk) in passes.items():
        out_grad[key] = _cnorm(np.asarray(dlk, np.float64)[0])
    hi = max(float(v.max()) for v in out_grad.values()) or 1.0
    images["dlogits"] = {k: _map(v, "magma", 0.0, hi) for k, v in out_grad.items()}
    if wmap is not None:
        images["weight"] = _map(_center_crop(wmap, H, W), "magma")

    levels = {}
    for bl in blocks:
        if "grad_norms" in bl:
            levels.setdefault(bl["level"], []).append([bl["name"], bl["grad_norms"]])

    data = dict(title=title or f"{type(model).__name__}: {model.num_parameters():,} parameters",
                model=type(model).__name__, params=int(model.num_parameters()), note=note or "", target_note=target_note,
                loss=loss_value, loss_name=("cross-entropy" if model.num_classes > 1 else "BCE with logits")
                + (" with the U-Net weight map" if wmap is not None else ""),
                loss_values={k: v[1] for k, v in passes.items()}, has_wm=wmap is not None, svg=svg, blocks=blocks,
                images=images, levels={str(k): v for k, v in sorted(levels.items())},
                error_counts=dict(fp=int(((pred == 1) & (gt_fg == 0)).sum()), fn=int(((pred == 0) & (gt_fg == 1)).sum()),
                                  tp=int(((pred == 1) & (gt_fg == 1)).sum())),
                dlogits_sum_check=float(np.abs(dl).sum()))
    if snapshots:
        data["snapshots"] = _snapshots(model, x, snapshots, [bl["name"] for bl in blocks])
    return data


def _snapshots(model, x, snapshots, block_names):
    """[label, prediction PNG, {block: small feature grid}] for each state_dict, then the final
    weights are put back."""
    final = model.state_dict()
    res = []
    try:
        for label, sd in snapshots:
            model.load_state_dict(sd)
            model.eval()
            out = model(x)
            prob = _probability(model, out)
            _set_structure(model, True)
            rec = _Recorder(model)
            rec.forward(x)
            g = _Graph(model, rec, x)
            feats = {b: _grid(np.asarray(g.block_output(b))[0], "viridis", pixels=SNAP_PIXELS, max_channels=16)
                     for b in block_names if b in g.last_call}
            res.append(dict(label=str(label), prob=_map(prob, "viridis", 0.0, 1.0), features=feats))
    finally:
        model.load_state_dict(final)
    return res


def explain(model, image, path, mask=None, labels=None, weight_map=True, snapshots=None, title=None, note=None):
    """Write the U-Net Explainer page for ``model`` on ``image`` to ``path`` (one self-contained HTML
    file, opens offline in any browser).  Arguments as :func:`explainer_data`.  Returns
    dict(path, bytes, blocks) (bytes: the file's size)."""
    data = explainer_data(model, image, mask=mask, labels=labels, weight_map=weight_map, snapshots=snapshots,
                          title=title, note=note)
    page = render(data)
    tmp = str(path) + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(page)
    import os
    os.replace(tmp, path)
    return dict(path=str(path), bytes=len(page.encode("utf-8")), blocks=[b["name"] for b in data["blocks"]])
