"""``npunet.summary``: a table of every block's output shape, parameters and the activation
memory it keeps for backward, computed from shapes alone (no convolution is run)."""
import numpy as np

from .. import nn
from ..nn.module import Meta, shape_only  # noqa: F401  (shape_only: part of this module's API)


def trace_shapes(model, input_shape, dtype=None):
    """Run ``model`` on a shape-only input.  Returns (output Meta(s), leaf calls [(module, inputs, out)])."""
    dtype = dtype or model.dtype or np.float32
    with shape_only() as calls:
        out = model(Meta(input_shape, dtype))
    return out, list(calls)


def _flat(out):
    if isinstance(out, (list, tuple)):
        return [o for x in out for o in _flat(x)]
    return [out]


def _fmt_bytes(b):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if b < 1024 or unit == "GiB":
            return f"{b:.0f} {unit}" if unit == "B" else f"{b:.1f} {unit}"
        b /= 1024


def summary(model, input_shape, depth=1, print_fn=print):
    """Print and return a table of the blocks of ``model`` for an input of ``input_shape`` (N, C, H, W).

    depth: 1 lists the top-level blocks (down1, pool1, up1, ...); larger values list deeper children.
    Rows: name, output shape, parameters, activation bytes kept for backward.  Totals and the
    one-line trace of spatial sizes (572 -> 570 -> 568 -> ... -> 388) follow.
    Returns dict(rows, total_params, activation_bytes, trace).
    """
    names = {id(m): n for n, m in model.named_modules()}
    was_training = model.training
    out, calls = trace_shapes(model, input_shape)
    rows, order = {}, []
    seen_arrays, total_kept = set(), 0
    trace_sizes = [input_shape[2]]
    for m, inputs, o in calls:
        full = names.get(id(m), "?")
        block = ".".join(full.split(".")[:depth])
        kept, own = m.kept(inputs, o)
        b = own
        for a in kept:
            if id(a) not in seen_arrays:
                seen_arrays.add(id(a))
                b += a.nbytes
        total_kept += b
        if block not in rows:
            rows[block] = dict(name=block, shape=None, params=0, act_bytes=0)
            order.append(block)
        rows[block]["shape"] = tuple(_flat(o)[0].shape)
        rows[block]["act_bytes"] += b
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.MaxPool2d, nn.Upsample, nn.CropConcat, nn.CenterCrop)) \
                and _flat(o)[0].shape[2] * inputs[0].shape[2] > 1:  # not squeeze-and-excitation's 1x1 maps
            s = _flat(o)[0].shape[2]
            if s != trace_sizes[-1]:
                trace_sizes.append(s)
    for block in order:
        mod = model
        for part in block.split("."):
            mod = getattr(mod, part, None) if mod is not None else None
        rows[block]["params"] = mod.num_parameters() if mod is not None and hasattr(mod, "num_parameters") else 0
    total = model.num_parameters()
    outs = _flat(out)
    trace = "\u2192".join(str(s) for s in trace_sizes)
    lines = [f"{type(model).__name__} on input {tuple(input_shape)}",
             f"{'block':24s} {'output shape':22s} {'params':>12s} {'kept for backward':>18s}"]
    for block in order:
        r = rows[block]
        lines.append(f"{r['name']:24s} {str(r['shape']):22s} {r['params']:12,d} {_fmt_bytes(r['act_bytes']):>18s}")
    lines.append(f"{'total':24s} {str(tuple(outs[0].shape)) + (f' x{len(outs)}' if len(outs) > 1 else ''):22s} "
                 f"{total:12,d} {_fmt_bytes(total_kept):>18s}")
    lines.append(f"trace: {trace}")
    text = "\n".join(lines)
    if print_fn:
        print_fn(text)
    model.train(was_training)
    return dict(rows=[rows[b] for b in order], total_params=total, activation_bytes=total_kept, trace=trace,
                trace_sizes=trace_sizes, output_shapes=[tuple(o.shape) for o in outs], text=text)
