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
from matplotlib.lines import Line2D
from matplotlib.patches import FancyArrowPatch, Rectangle

from ..models.registry import entry_of
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


def _head_shape(blocks, edges, b):
    """A head's output as the loss sees it: follow parameter-free successors (UNet 3+'s upscore_k
    up-samples head k to full resolution)."""
    succ = {}
    for u, v in edges:
        succ.setdefault(u, []).append(v)
    shape, node = blocks[b]["shape"], b
    while len(succ.get(node, [])) == 1 and blocks[succ[node][0]]["params"] == 0:
        node = succ[node][0]
        shape = blocks[node]["shape"]
    return shape


def _branch_kind(names):
    """UNet 3+'s full-scale links by the authors' names: _PT_ pooled, _Cat_ same scale, _UT_ up-sampled."""
    for key, kind in (("_PT_", "pool"), ("_Cat_", "same"), ("_UT_", "up")):
        if any(key in n for n in names):
            return kind
    return None


_LINKS = {"main": dict(color="#444444", lw=0.8),
          "skip": dict(color="#756bb1", lw=0.9, ls="--"),
          "pool": dict(color="#d62728", lw=0.7, alpha=0.7),
          "same": dict(color="#2ca02c", lw=0.9, alpha=0.9),
          "up": dict(color="#1f77b4", lw=0.7, alpha=0.7),
          "head": dict(color="#31a354", lw=0.8, ls=":")}
_LINK_LABELS = {"main": "conv blocks: down (max-pool), up (up-sampling)", "skip": "skip (concatenated), dense arcs",
                "pool": "full-scale skip: max-pooled from a shallower map", "same": "full-scale skip: same scale",
                "up": "full-scale skip: bilinearly up-sampled from a deeper map",
                "head": "deep supervision head (1x1 conv), at full resolution"}


def draw_architecture(model, input_shape, path=None, title=None, ax=None, depth=1):
    """Draw any npunet model; returns the matplotlib figure (saved to ``path`` if given).
    depth: how many levels of children become boxes (see :func:`block_graph`).
    Heads (out*, final*) are drawn above row 0 with the output size the loss sees; skips between
    nodes of one row are arcs; in a U-Net++ the nested U-Net (X^{i,0} and X^{i,L-i}) is outlined."""
    blocks, order, edges, _ = block_graph(model, input_shape, depth)

    def is_edge(b):
        return blocks[b]["params"] == 0 or blocks[b]["cls"] == "Branch"

    def is_head(b):
        return ((b.split(".")[-1].startswith(("out", "final")) or b.split(".")[0].endswith("head"))
                and blocks[b]["cls"] == "Conv2d")

    keep, links = _contract(blocks, order, edges, is_edge)
    heads = [b for b in keep if is_head(b)]
    multi_head = len(heads) > 1
    H0 = input_shape[2]
    x = {"input": 0}
    for b in keep:  # longest path from the input
        preds = [a for (a, c) in links if c == b]
        x[b] = 1 + max((x.get(a, 0) for a in preds), default=0)
    level = {b: math.log2(H0 / blocks[b]["shape"][2]) if blocks[b]["shape"][2] else 0 for b in keep}
    level["input"] = 0
    head_src = {b: [a for (a, c) in links if c == b][0] for b in heads}
    beside = multi_head and len({level[s] for s in head_src.values()}) > 1
    if multi_head:          # deep supervision: heads in a row above row 0 (U-Net++), or beside their source (UNet 3+)
        for b in heads:
            src = head_src[b]
            x[b], level[b] = (x[src] + 0.9, level[src]) if beside else (x[src], -1.4)
    own = ax is None
    compact = max(x.values()) > 16      # many blocks in a row (an encoder drawn block by block): README width
    fs = 1.35 if compact else 1.0       # font scale
    if own:
        width = 13 if compact else max(8, 1.1 * max(x.values()) + 2)
        fig, ax = plt.subplots(figsize=(width, (2.4 if compact else 3.2) + (0.95 if compact else 1.5)
                                        * (max(level.values()) + 1)))
    else:
        fig = ax.figure
    maxc = max(blocks[b]["shape"][1] for b in keep)
    L = getattr(model, "depth", None)
    entry = entry_of(model)
    nested = entry is not None and entry.layout == "nested" and L is not None
    pos = {}
    for b in ["input"] + keep:
        shape = input_shape if b == "input" else _head_shape(blocks, edges, b) if is_head(b) else blocks[b]["shape"]
        C, H, W = shape[1], shape[2], shape[3]
        w = 0.25 + 0.55 * math.log2(C + 1) / math.log2(maxc + 1) if not compact else 0.72
        h = 0.3 + 0.6 * H / H0 if not (is_head(b) and multi_head) else 0.5
        cx, cy = x[b], -1.5 * level[b]
        pos[b] = (cx, cy, w, h)
        part = b.split(".")[0]
        down = part == "encoder" or (part != "decoder" and ("down" in b or b.startswith(("x", "conv"))
                                                            and b.endswith(("_0", "1", "2", "3", "4", "5"))))
        color = "#d9d9d9" if b == "input" else "#9ecae1" if down else "#fdae6b"
        if is_head(b):
            color = "#a1d99b"
        edge, lw = "k", 0.8
        if nested and b.startswith("x") and "_" in b:
            i, j = (int(v) for v in b[1:].split("_"))
            if j == 0 or i + j == L:
                edge, lw = "#d62728", 2.2
        box = ax.add_patch(Rectangle((cx - w / 2, cy - h / 2), w, h, facecolor=color, edgecolor=edge, lw=lw))
        box.set_gid(f"blk-{b}")  # the SVG element's id: npunet.viz.explain makes the boxes clickable
        label = b if depth == 1 else "head" if is_head(b) else {"encoder": "e", "decoder": "d"}.get(part, "") + \
            b.split(".")[-1]                                  # nested: e7 = the encoder's block 7
        size = f"{C}×{H}×{W}" if not compact else f"{C}"             # compact: H×W once per row
        if compact and b == "input":
            label = "in"
        if is_head(b) and multi_head and not beside:     # the head's line arrives from below: labels on top
            ax.text(cx, cy + h / 2 + 0.05, f"{label}\n{size}", ha="center", va="bottom", fontsize=6.5,
                    linespacing=1.1)
        elif is_head(b) and beside:
            ax.text(cx + w / 2 + 0.06, cy, f"{label}\n{size}", ha="left", va="center", fontsize=6.5, linespacing=1.1)
        else:                                             # arcs and up-sampling links arrive from above or the side
            ax.text(cx, cy, label, ha="center", va="center", fontsize=((5 if len(label) > 3 else 6) if compact else 7 if w > 0.45 else 6) * fs,
                    rotation=0 if w > 0.3 or len(label) < 4 or compact else 90)
            ax.text(cx, cy - h / 2 - 0.05, size, ha="center", va="top", fontsize=fs * 6, color="#333333")
    used = set()
    for (a, b), via in links.items():
        ax0, ay0, aw, ah = pos[a]
        bx0, by0, bw, bh = pos[b]
        branch = _branch_kind(via) if any(blocks[v]["cls"] == "Branch" for v in via) else None
        same_row = abs(ay0 - by0) < 1e-9
        if is_head(b) and multi_head and beside:
            kind, start, end, rad = "head", (ax0 + aw / 2, ay0), (bx0 - bw / 2, by0), 0.0
        elif is_head(b) and multi_head:
            kind, start, end, rad = "head", (ax0, ay0 + ah / 2), (bx0, by0 - bh / 2), 0.0
        elif branch == "up":
            # from a deeper map: leave its top, bow left of the decoder's diagonal, arrive at the
            # target's lower left, so that no line crosses a box or a size label on the way
            kind, start, end = branch, (ax0 - aw / 4, ay0 + ah / 2), (bx0 - bw / 2, by0 - bh / 4)
            rad = -0.25
        elif branch:
            kind, start, end, rad = branch, (ax0 + aw / 2, ay0), (bx0 - bw / 2, by0), 0.0
        elif any("Concat" in blocks[v]["cls"] for v in via) and same_row and bx0 - ax0 > 1:
            # a skip along one row: an arc over the nodes in between, higher the farther it jumps
            kind, start, end = "skip", (ax0 + aw / 4, ay0 + ah / 2), (bx0 - bw / 4, by0 + bh / 2)
            rad = -min(0.1 + 0.03 * (bx0 - ax0), 0.35)
        else:
            kind, start, end, rad = "main", (ax0 + aw / 2, ay0), (bx0 - bw / 2, by0), 0.0
        used.add(kind)
        if kind == "main":
            used.add("main down" if by0 < ay0 - 1e-9 else "main up" if by0 > ay0 + 1e-9 else "main")
        ax.add_patch(FancyArrowPatch(start, end, arrowstyle="-|>", mutation_scale=7,
                                     connectionstyle=f"arc3,rad={rad}", **_LINKS[kind]))
    main = {"main down", "main up"} & used         # the legend names only what the figure holds
    labels = dict(_LINK_LABELS, main={frozenset({"main down", "main up"}): "conv blocks: down (max-pool), up (up-sampling)",
                                      frozenset({"main down"}): "conv blocks: down (max-pool)",
                                      frozenset({"main up"}): "conv blocks: up (up-sampling)",
                                      frozenset(): "conv blocks"}[frozenset(main)])
    handles = [Line2D([0], [0], label=labels[k], **{("linestyle" if a == "ls" else a): v
                                                    for a, v in _LINKS[k].items()})
               for k in _LINKS if k in used and (k != "main" or len(used & set(_LINKS)) > 1)]
    if nested:
        handles.append(Rectangle((0, 0), 1, 1, facecolor="white", edgecolor="#d62728", lw=2.2,
                                 label=f"the U-Net inside: X^(i,0) and X^(i,{L}-i)"))
    if any(b.split(".")[0] in ("encoder", "decoder") for b in keep):
        handles = [Rectangle((0, 0), 1, 1, facecolor=c, edgecolor="k", lw=0.8, label=lab) for c, lab in
                   (("#9ecae1", "encoder block (e0, e1, ...)"), ("#fdae6b", "decoder block (d0, d1, ...): "
                    "up-sample, concatenate the skip, two convs"), ("#a1d99b", "segmentation head (conv)"))] + \
                  [Line2D([0], [0], color=_LINKS["main"]["color"], lw=0.8,
                          label="data flow; the long horizontal arrows are the skips")]
    if compact:             # one size per row instead of C×H×W under every box
        for lv in sorted({level[b] for b in keep}):
            Hs = [blocks[b]["shape"] for b in keep if level[b] == lv and not is_head(b)]
            if Hs:
                ax.text(-0.9, -1.5 * lv, f"{Hs[0][2]}×{Hs[0][3]}", ha="right", va="center", fontsize=fs * 7,
                        color="#555555")
    if handles:
        ax.legend(handles=handles, loc="lower left" if compact else "lower right", fontsize=fs * 7, frameon=False)
    top = 1.2 + (1.5 * 1.4 + 0.3 if multi_head and not beside else 0)
    ax.set_xlim(-2.2 if compact else -1, max(x.values()) + (1.8 if beside else 1))
    ax.set_ylim(-1.5 * max(level.values()) - (3.2 if compact else 1.3), top)
    ax.set_aspect("auto" if compact else "equal")
    ax.axis("off")
    ax.set_title(title or f"{type(model).__name__}: {model.num_parameters():,} parameters, input {tuple(input_shape)}",
                 fontsize=fs * 9)
    if path and own:
        fig.savefig(path, dpi=110 if compact else 130, bbox_inches="tight")
        finish(fig)  # closed in a script; a notebook shows it
    return fig
