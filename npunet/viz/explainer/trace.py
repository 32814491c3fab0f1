"""The model run once with every leaf call recorded (forward arrays, incoming and outgoing gradients), the
loss, and the graph of blocks (the model's own children) with their inputs and consumers."""
import numpy as np

from ... import nn
from ...nn import module as _module


class _Recorder:
    """Records every leaf call of a forward (module, inputs, output, with real arrays) and, during the
    backward, each leaf's incoming gradient and the gradients it returns for its inputs."""

    def __init__(self, model):
        self.model = model
        self.calls = []
        self.grad_out = {}
        self.grad_in = {}

    def forward(self, x):
        old = _module._mode.trace
        _module._mode.trace = []
        try:
            out = self.model(x)
            self.calls = list(_module._mode.trace)
        finally:
            _module._mode.trace = old
        return out

    def backward(self, d, keep_out=None, keep_in=None):
        """model.backward(d), keeping the incoming gradient of the calls in keep_out and the outgoing
        ones of the calls in keep_in (None: all; the others are dropped as soon as used: memory)."""
        index = {}
        for i, (m, _, _) in enumerate(self.calls):
            index.setdefault(id(m), []).append(i)
        hooked = []
        for key, idx in index.items():
            m = self.calls[idx[0]][0]
            if len(idx) != 1:      # a layer called twice: its backward order is ambiguous; not recorded
                continue
            i = idx[0]
            orig = m.backward

            def hook(g, _orig=orig, _i=i):
                if keep_out is None or _i in keep_out:
                    self.grad_out[_i] = g
                r = _orig(g)
                if keep_in is None or _i in keep_in:
                    self.grad_in[_i] = r if isinstance(r, tuple) else (r,)
                return r
            object.__setattr__(m, "backward", hook)
            hooked.append(m)
        try:
            return self.model.backward(d)
        finally:
            for m in hooked:
                del m.__dict__["backward"]


def _set_structure(model, training):
    """Containers (the model's forward logic: deep-supervision heads) in training mode, the leaves
    (BatchNorm statistics, dropout) in eval: the training graph with the inference numbers."""
    for m in model.modules():
        object.__setattr__(m, "training", training if not m._leaf else False)


def _heads(out):
    if isinstance(out, tuple):
        out = out[0]
    return list(out) if isinstance(out, list) else [out]


def _center_crop(a, H, W):
    h, w = a.shape[-2:]
    t, l = (h - H) // 2, (w - W) // 2
    return a[..., t:t + H, l:l + W]


def _loss_and_grad(model, out, mask, weight):
    """The training loss of ``out`` (the heads in training structure) against ``mask``; returns
    (value, the gradient to feed model.backward, dL/dlogits of the first head)."""
    from ... import losses
    heads = _heads(out)
    H, W = heads[0].shape[-2:]
    m = _center_crop(mask, H, W)
    w = None if weight is None else _center_crop(weight, H, W)[None].astype(heads[0].dtype)
    C = heads[0].shape[1]
    if C == 1:
        base, target = losses.BCEWithLogitsLoss(), m[None, None].astype(heads[0].dtype)
    else:
        base, target = losses.CrossEntropyLoss(), m[None].astype(np.int64)
    ds = losses.DeepSupervisionLoss(base)
    value = ds.forward(heads, target, w)
    grads = ds.backward()
    plain = out[0] if isinstance(out, tuple) else out
    d = grads if isinstance(plain, list) else grads[0]
    if isinstance(out, tuple):      # UNet 3+'s classification-guided module: no classification loss here
        d = (d, np.zeros_like(out[1]))
    return float(value), d, grads[0]


def _probability(model, out):
    """Foreground probability (H, W) of the eval output (logits, or UNet 3+'s gated probabilities)."""
    z = np.asarray(out[0] if isinstance(out, (list, tuple)) else out, np.float64)[0]
    if getattr(model, "cgm", False):
        return z[-1]
    if z.shape[0] == 1:
        return 1 / (1 + np.exp(-z[0]))
    e = np.exp(z - z.max(axis=0))
    return 1 - (e[0] / e.sum(axis=0))


# ------------------------------------------------------------------ the graph of blocks

def _block_depth(model):
    return 3 if type(model).__name__ == "EncoderUNet" else 1


def _child(model, dotted):
    for part in dotted.split("."):
        model = getattr(model, part) if not part.isdigit() else model[int(part)]
    return model


def _rf_step(m, inputs, rf):
    """Receptive field (size, jump) of a leaf's output from its inputs' (Dilated convs: none in npunet.)"""
    r = [rf.get(id(x), (1, 1)) for x in inputs if isinstance(x, np.ndarray)]
    size = max(s for s, _ in r) if r else 1
    jump = min(j for _, j in r) if r else 1
    if isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
        k, s = m.kernel_size[0], m.stride[0]
        return size + (k - 1) * jump, jump * s
    if isinstance(m, nn.ConvTranspose2d):
        j = jump / m.stride[0]
        return size + max(0, m.kernel_size[0] - m.stride[0]) * j, j
    if isinstance(m, nn.Upsample):
        f = float(m.scale_factor[0]) if m.scale_factor else 2.0
        return size + (jump if m.mode == "bilinear" else 0), jump / f
    if type(m).__name__.startswith("Adaptive"):
        return float("inf"), jump
    return size, jump


class _Graph:
    def __init__(self, model, rec, x):
        names = {id(m): n for n, m in model.named_modules()}
        depth = _block_depth(model)
        self.calls = rec.calls
        self.leaf_names = [names[id(m)] for m, _, _ in self.calls]
        self.block_of = [".".join(n.split(".")[:depth]) for n in self.leaf_names]
        self.order = []
        for b in self.block_of:
            if b not in self.order:
                self.order.append(b)
        self.producer = {id(x): -1}
        self.consumers = {}
        self.arrays = {id(x): x}
        rf = {id(x): (1, 1)}
        self.rf = {}
        for i, (m, inputs, out) in enumerate(self.calls):
            for pos, a in enumerate(inputs):
                if isinstance(a, np.ndarray):
                    self.consumers.setdefault(id(a), []).append((i, pos))
                    self.arrays.setdefault(id(a), a)
            rf[id(out)] = _rf_step(m, inputs, rf)
            self.producer[id(out)] = i
            self.arrays[id(out)] = out
        self.rf_of = rf
        self.last_call = {}
        for i, b in enumerate(self.block_of):
            self.last_call[b] = i

    def block_output(self, b):
        return self.calls[self.last_call[b]][2]

    def block_inputs(self, b):
        """[(array, producer block or 'input')] read by block b from outside it, in order."""
        seen, res = set(), []
        for i, blk in enumerate(self.block_of):
            if blk != b:
                continue
            for a in self.calls[i][1]:
                if not isinstance(a, np.ndarray) or id(a) in seen:
                    continue
                p = self.producer.get(id(a))
                src = "input" if p == -1 else self.block_of[p] if p is not None else None
                if src is not None and src != b:
                    seen.add(id(a))
                    res.append((a, src))
        return res

    def block_consumers(self, b):
        """[(consumer call index, input position, consumer block)] of b's output outside b."""
        out = self.block_output(b)
        return [(i, pos, self.block_of[i]) for i, pos in self.consumers.get(id(out), []) if self.block_of[i] != b]
