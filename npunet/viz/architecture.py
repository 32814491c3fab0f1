"""Architecture diagrams drawn from the model itself.

The model is run shape-only (npunet.summary's trace); every leaf call records which arrays it
read and wrote, which gives the data-flow graph between top-level blocks.  Blocks with
parameters become boxes (width ~ log2 channels, height ~ resolution, labelled C x H x W);
parameter-free blocks (pools, upsampling, concat) and UNet 3+'s full-scale branches become the
arrows between them.  x = longest path from the input, y = resolution level: U-Net comes out
as a U, U-Net++ as its nested triangle, UNet 3+ with its full-scale links.
"""
import math

import matplotlib.pyplot as plt
from matplotlib.patches import FancyArrowPatch, Rectangle

from ..models.summary import trace_shapes
from .plots import finish


def _child(model, dotted):
    for part in dotted.split("."):
        model = getattr(model, part) if not part.isdigit() else model[int(part)]
    return model


def block_graph(model, input_shape, depth=1):
    """Returns (blocks {name: dict(shape, params, kind)}, edges {(a, b): via}) for the blocks ``depth``
    levels down (1: the top-level children; 3 for an EncoderUNet: encoder.features.4, decoder.blocks.0)."""
    names = {id(m): n for n, m in model.named_modules()}
    out, calls = trace_shapes(model, input_shape)
    producer = {}
    blocks, order, edges = {}, [], {}

    def top(m):
        return ".".join(names[id(m)].split(".")[:depth])

    for m, inputs, o in calls:
        b = top(m)
        if b not in blocks:
            child = _child(model, b)
            blocks[b] = dict(shape=None, params=child.num_parameters(), cls=type(child).__name__)
            order.append(b)
        for x in inputs:
            a = producer.get(id(x), "input")
            if a != b:
                edges[(a, b)] = True
        for y in (o if isinstance(o, (list, tuple)) else [o]):
            producer[id(y)] = b
        blocks[b]["shape"] = (o[0] if isinstance(o, (list, tuple)) else o).shape
    return blocks, order, list(edges), out


def _contract(blocks, order, edges, is_edge):
    """Drop edge-like blocks, joining their predecessors to their successors (label: the dropped names)."""
    keep = [b for b in order if not is_edge(b)]
    succ = {}
    for a, b in edges:
        succ.setdefault(a, []).append(b)
    result = {}

    def walk(a, node, via):
        for nxt in succ.get(node, []):
            if nxt in keep:
                result.setdefault((a, nxt), set()).update(via)
            elif nxt not in via:
                walk(a, nxt, via | {nxt})

    for a in ["input"] + keep:
        walk(a, a, frozenset())
    return keep, result


def draw_architecture(model, input_shape, path=None, title=None, ax=None, depth=1):
    """Draw any npunet model; returns the matplotlib figure (saved to ``path`` if given).
    depth: how many levels of children become boxes (see :func:`block_graph`)."""
    blocks, order, edges, _ = block_graph(model, input_shape, depth)

    def is_edge(b):
        return blocks[b]["params"] == 0 or blocks[b]["cls"] == "Branch"

    keep, links = _contract(blocks, order, edges, is_edge)
    H0 = input_shape[2]
    x = {"input": 0}
    for b in keep:  # longest path from the input
        preds = [a for (a, c) in links if c == b]
        x[b] = 1 + max((x.get(a, 0) for a in preds), default=0)
    level = {b: math.log2(H0 / blocks[b]["shape"][2]) if blocks[b]["shape"][2] else 0 for b in keep}
    level["input"] = 0
    own = ax is None
    if own:
        width = max(8, 1.1 * max(x.values()) + 2)
        fig, ax = plt.subplots(figsize=(width, 2.2 + 1.5 * (max(level.values()) + 1)))
    else:
        fig = ax.figure
    maxc = max(blocks[b]["shape"][1] for b in keep)
    pos = {}
    for b in ["input"] + keep:
        shape = input_shape if b == "input" else blocks[b]["shape"]
        C, H, W = shape[1], shape[2], shape[3]
        w = 0.25 + 0.55 * math.log2(C + 1) / math.log2(maxc + 1)
        h = 0.3 + 0.6 * H / H0
        cx, cy = x[b], -1.5 * level[b]
        pos[b] = (cx, cy, w, h)
        color = "#d9d9d9" if b == "input" else ("#9ecae1" if "down" in b or b.startswith(("x", "conv")) and b.endswith(("_0", "1", "2", "3", "4", "5")) else "#fdae6b")
        if b.startswith(("out", "final")):
            color = "#a1d99b"
        ax.add_patch(Rectangle((cx - w / 2, cy - h / 2), w, h, facecolor=color, edgecolor="k", lw=0.8))
        label = b if depth == 1 else b.split(".")[-1]  # nested: the index inside its container
        ax.text(cx, cy + h / 2 + 0.06, label, ha="center", va="bottom", fontsize=7)
        ax.text(cx, cy - h / 2 - 0.05, f"{C}×{H}×{W}", ha="center", va="top", fontsize=6, color="#333333")
    for (a, b), via in links.items():
        ax0, ay0, aw, _ = pos[a]
        bx0, by0, bw, _ = pos[b]
        kinds = {blocks[v]["cls"] for v in via}
        style = dict(color="#31a354", lw=0.6, alpha=0.6) if "Branch" in kinds else \
            dict(color="#756bb1", lw=0.8, ls="--") if any("Concat" in k for k in kinds) and abs(ay0 - by0) < 1e-9 and bx0 - ax0 > 1 else \
            dict(color="#444444", lw=0.8)
        ax.add_patch(FancyArrowPatch((ax0 + aw / 2, ay0), (bx0 - bw / 2, by0), arrowstyle="-|>", mutation_scale=7,
                                     connectionstyle="arc3,rad=0.0", **style))
    ax.set_xlim(-1, max(x.values()) + 1)
    ax.set_ylim(-1.5 * max(level.values()) - 1.3, 1.2)
    ax.set_aspect("equal")
    ax.axis("off")
    ax.set_title(title or f"{type(model).__name__}: {model.num_parameters():,} parameters, input {tuple(input_shape)}",
                 fontsize=9)
    if path and own:
        fig.savefig(path, dpi=130, bbox_inches="tight")
        finish(fig)  # closed in a script; a notebook shows it
    return fig
