"""Module and Parameter: PyTorch's bookkeeping, with an explicit backward.

``y = m(x)`` runs ``forward`` and keeps what backward needs; ``m.backward(dy)``
returns the input gradient (a tuple for several inputs) and *adds* parameter
gradients into ``Parameter.grad``, as PyTorch accumulates (``zero_grad()`` clears).
One forward allows one backward: the cache is used up, as PyTorch frees its graph.

A layer (a leaf module) follows one protocol, shown in full by ``Conv2d`` (nn/conv.py; ``nn.Op``, nn/op.py,
runs the same steps for the layers that are one backend pair):
  ``_check(*inputs) -> output shape``  validate the inputs (errors name the layer); also gives
                                       the shape-only mode (``npunet.summary``) its answer;
  ``forward``   ``_check``, call the backend's pair, ``self._save(cache, out)``, return out;
  ``backward``  ``ops, cache = self._restore(grad)``, call ``ops.xxx_backward``, add into
                ``Parameter.grad``, return dx.
"""
from collections import OrderedDict

import numpy as np

from .. import backends
from .checks import _FLOATS, check_array, check_finite, check_grad, fingerprint  # noqa: F401  (npunet.nn.module's names)
from .mode import (Meta, _mode, inference_mode, is_grad_enabled, no_grad, set_checks,  # noqa: F401
                   shape_only, tracing)

_USED = object()  # the cache after its backward ran
_NO_GRAD = object()  # the cache of a forward run under no_grad()


class Parameter:
    """A trainable array.  data: any shape; grad: same shape, accumulated by backward (None after
    ``zero_grad(set_to_none=True)`` until the next backward).  ``requires_grad = False`` freezes it:
    backward adds no gradient (its layer skips the weight-gradient GEMM; the input gradient still
    flows) and optimisers leave it alone."""

    def __init__(self, data, requires_grad=True):
        from .. import init
        self.requires_grad = bool(requires_grad)
        if init.building_shapes_only():  # a shape-only model (npunet.init.shapes_only): no memory
            data = init._stand_in(np.shape(data), getattr(data, "dtype", np.float32))
            self.data = self.grad = data
            return
        self.data = np.ascontiguousarray(data)
        self.grad = np.zeros_like(self.data)

    def accumulate(self, g):
        """grad += g (layers' backward call this); nothing for a frozen parameter or g None."""
        if g is None or not self.requires_grad:
            return
        if self.grad is None:
            self.grad = np.array(g, dtype=self.data.dtype, copy=True)
        else:
            self.grad += g

    @property
    def shape(self):
        return self.data.shape

    @property
    def dtype(self):
        return self.data.dtype

    @property
    def size(self):
        return self.data.size

    def __repr__(self):
        frozen = "" if self.requires_grad else ", requires_grad=False"
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype}{frozen})"


class Module:
    """Base class.  Subclasses set Parameters, buffers and child Modules as attributes."""

    _leaf = False  # leaf layers implement _check (and so shape-only mode)

    def __init__(self):
        object.__setattr__(self, "_params", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)
        object.__setattr__(self, "_path", "")
        object.__setattr__(self, "_cache", None)

    # ------------------------------------------------------------ registration
    def __setattr__(self, name, value):
        if "_params" not in self.__dict__:
            raise RuntimeError(f"{type(self).__name__}: call Module.__init__() before setting attributes")
        if name in self._buffers and not isinstance(value, (Parameter, Module)):
            object.__setattr__(self, name, value)  # a buffer keeps its registration
            return
        keep = self._params if isinstance(value, Parameter) else self._modules if isinstance(value, Module) else None
        for d in (self._params, self._buffers, self._modules):
            if d is not keep:  # a replaced child keeps its place in the order (a Sequential's), as in PyTorch
                d.pop(name, None)
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._modules[name] = value
            value._set_path(f"{self._path}.{name}" if self._path else name)
        object.__setattr__(self, name, value)

    def add_child(self, name, module):
        """Register ``module`` as child ``name`` (what ``self.name = module`` does, for computed names)."""
        setattr(self, name, module)

    def register_buffer(self, name, array):
        self._buffers[name] = None
        object.__setattr__(self, name, array)

    def _set_path(self, path):
        object.__setattr__(self, "_path", path)
        for n, m in self._modules.items():
            m._set_path(f"{path}.{n}")

    @property
    def label(self):
        """How errors name this layer: ``Conv2d('down1.conv1')``."""
        return f"{type(self).__name__}('{self._path}')" if self._path else type(self).__name__

    # ------------------------------------------------------------ traversal
    def named_modules(self, prefix=""):
        """(dotted_name, module) for this module ("") and every descendant, depth first, as PyTorch."""
        yield prefix, self
        for n, m in self._modules.items():
            yield from m.named_modules(f"{prefix}.{n}" if prefix else n)

    def apply(self, fn):
        """fn(m) for every descendant, then for self (PyTorch's order); returns self."""
        for m in self._modules.values():
            m.apply(fn)
        fn(self)
        return self

    def requires_grad_(self, requires_grad=True):
        """Freeze (False) or unfreeze every parameter below this module; returns self.
        ``model.encoder.requires_grad_(False)`` trains only the decoder."""
        for p in self.parameters():
            p.requires_grad = bool(requires_grad)
        return self

    def modules(self):
        for _, m in self.named_modules():
            yield m

    def children(self):
        return iter(self._modules.values())

    def named_children(self):
        return iter(self._modules.items())

    def named_parameters(self, prefix=""):
        """(dotted_name, Parameter) in registration order, like PyTorch."""
        seen = set()
        for mp, m in self.named_modules(prefix):
            for n, p in m._params.items():
                if id(p) not in seen:
                    seen.add(id(p))
                    yield (f"{mp}.{n}" if mp else n), p

    def parameters(self):
        for _, p in self.named_parameters():
            yield p

    def named_buffers(self):
        for mp, m in self.named_modules():
            for n in m._buffers:
                yield (f"{mp}.{n}" if mp else n), getattr(m, n)

    def num_parameters(self):
        return int(sum(p.size for p in self.parameters()))

    # ------------------------------------------------------------ state
    def state_dict(self):
        """Parameters and buffers by PyTorch's names, as copies (``down1.conv1.weight`` ...)."""
        sd = OrderedDict()
        for mp, m in self.named_modules():
            for n, p in m._params.items():
                sd[f"{mp}.{n}" if mp else n] = p.data.copy()
            for n in m._buffers:
                sd[f"{mp}.{n}" if mp else n] = np.array(getattr(m, n), copy=True)
        return sd

    def load_state_dict(self, state, strict=True):
        """Copy arrays into this model; a missing or unexpected key or a wrong shape raises KeyError/ValueError.
        Non-finite values are checked after the cast to the model's dtype (1e300 is inf in float32)."""
        if not hasattr(state, "keys") or not hasattr(state, "__getitem__"):
            raise TypeError(f"{type(self).__name__}.load_state_dict: expected a dict of name -> array "
                            f"(model.state_dict()), got {type(state).__name__}")
        own = {}
        for mp, m in self.named_modules():
            for n in m._params:
                own[f"{mp}.{n}" if mp else n] = (m, n, True)
            for n in m._buffers:
                own[f"{mp}.{n}" if mp else n] = (m, n, False)
        missing = [k for k in own if k not in state]
        unexpected = [k for k in state if k not in own]
        if strict and (missing or unexpected):
            raise KeyError(f"{type(self).__name__}.load_state_dict: {len(missing)} missing keys {missing[:8]}"
                           f"{' ...' if len(missing) > 8 else ''}, {len(unexpected)} unexpected keys {unexpected[:8]}"
                           f"{' ...' if len(unexpected) > 8 else ''}")
        for k, (m, n, is_param) in own.items():
            if k not in state:
                continue
            v = np.asarray(state[k])
            cur = m._params[n].data if is_param else getattr(m, n)
            if v.dtype.kind not in "biuf":
                raise TypeError(f"{type(self).__name__}.load_state_dict: '{k}' holds {v.dtype} values; "
                                f"expected a numeric array")
            if v.dtype.kind in "f" or np.asarray(cur).dtype.kind == "f":
                with np.errstate(over="ignore", invalid="ignore"):
                    cast = v.astype(np.asarray(cur).dtype)  # what the model would hold
                if cast.dtype.kind == "f" and not np.isfinite(cast).all():
                    n_bad = int((~np.isfinite(cast)).sum())
                    why = "overflow(s) in the model's " + str(cast.dtype) if np.isfinite(v).all() else "NaN/Inf value(s)"
                    raise ValueError(f"{type(self).__name__}.load_state_dict: '{k}' contains {n_bad} {why}; "
                                     f"the weights are corrupt (or training had diverged when they were saved)")
            if np.shape(cur) == () and v.shape == (1,):  # a scalar saved as shape (1,): PyTorch accepts it too
                v = v.reshape(())
            if v.shape != np.shape(cur):
                raise ValueError(f"{type(self).__name__}.load_state_dict: '{k}' has shape {v.shape}, "
                                 f"the model expects {np.shape(cur)}")
            if is_param:
                m._params[n].data = np.ascontiguousarray(v, dtype=cur.dtype).copy()
                if m._params[n].grad is not None:
                    m._params[n].grad = np.zeros_like(m._params[n].data)
            else:
                object.__setattr__(m, n, np.array(v, dtype=np.asarray(cur).dtype))
        return self

    def save(self, path):
        """Write the state_dict, atomically: ``.safetensors`` (PyTorch's keys and layouts; loads into the
        matching PyTorch model with strict=True) or ``.npz`` (no pickle)."""
        from ..io import save_state
        save_state(path, self.state_dict())

    def load(self, path):
        """Load a state_dict file (.safetensors, e.g. from ``safetensors.torch.save_file(model.state_dict())``,
        or .npz) with strict checking: missing, unexpected or wrong-shape keys are named."""
        from ..io import load_state
        state = load_state(path)
        if "meta" in state and any(k.startswith("model/") for k in state):
            raise ValueError(f"'{path}' is a training checkpoint (weights, optimiser state and metadata), not a "
                             f"state_dict file; load it with npunet.train.load_model(path) or npunet predict")
        return self.load_state_dict(state)

    # ------------------------------------------------------------ modes and dtype
    def train(self, mode=True):
        for m in self.modules():
            object.__setattr__(m, "training", bool(mode))
        return self

    def eval(self):
        return self.train(False)

    def to(self, dtype):
        """Convert parameters, their gradients and float buffers to float32 or float64; returns self.
        npunet runs on the CPU only: ``to("cpu")`` is accepted, a GPU device is refused."""
        if isinstance(dtype, str) and dtype.split(":")[0] in _DEVICES:
            if dtype == "cpu":
                return self
            _no_device(self, f'.to("{dtype}")')
        dtype = np.dtype(dtype)
        if dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            raise TypeError(f"{type(self).__name__}.to: dtype must be float32 or float64, got {dtype}")
        for m in self.modules():
            for p in m._params.values():
                p.data = p.data.astype(dtype)
                p.grad = None if p.grad is None else p.grad.astype(dtype)
            for n in m._buffers:
                b = getattr(m, n)
                if np.issubdtype(np.asarray(b).dtype, np.floating):
                    object.__setattr__(m, n, np.asarray(b).astype(dtype))
            m._cache = None
        return self

    def float(self):
        """Parameters and float buffers to float32 (PyTorch's ``.float()``); returns self."""
        return self.to(np.float32)

    def double(self):
        """Parameters and float buffers to float64 (PyTorch's ``.double()``); returns self."""
        return self.to(np.float64)

    def cpu(self):
        """npunet always runs on the CPU: returns self."""
        return self

    def cuda(self, *args, **kwargs):
        _no_device(self, ".cuda()")

    def half(self):
        raise TypeError(f"{type(self).__name__}.half(): npunet computes in float32 or float64 only; "
                        f"use .float() (or .double() for gradient checks)")

    def __getattr__(self, name):
        # only reached when normal lookup fails: PyTorch names npunet does without get one line each
        hint = _TORCH_ONLY.get(name)
        if hint is not None:
            raise AttributeError(f"{type(self).__name__}.{name}: not in npunet; {hint}")
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    @property
    def dtype(self):
        for p in self.parameters():
            return p.data.dtype
        return None

    def zero_grad(self, set_to_none=False):
        """Clear every parameter's gradient: zeros (default here, so that layers can add into it), or
        None with set_to_none=True (PyTorch's default; the next backward creates it)."""
        for p in self.parameters():
            p.grad = None if set_to_none else np.zeros_like(p.data)

    # ------------------------------------------------------------ calling
    def __call__(self, *inputs):
        if _mode.meta and self._leaf:
            out = self._infer(*inputs)
        else:
            if _mode.depth == 0 and _mode.check_finite is True:
                for x in inputs:
                    check_finite(self, x)
            _mode.depth += 1
            try:
                out = self.forward(*inputs)
            finally:
                _mode.depth -= 1
        if _mode.trace is not None and self._leaf:
            _mode.trace.append((self, inputs, out))
        return out

    def forward(self, *inputs):
        raise NotImplementedError

    def backward(self, grad):
        raise NotImplementedError

    def _check(self, *inputs):
        """Leaf layers: validate the inputs and return the output shape."""
        raise NotImplementedError(f"{self.label} has no shape inference")

    def _infer(self, *inputs):
        """Shape-only mode: the output as a Meta (shape and dtype, no data)."""
        return Meta(self._check(*inputs), inputs[0].dtype)

    def _save(self, cache, out, watch=()):
        """Keep what backward needs, with the backend that made it and the output's shape/dtype
        (nothing under no_grad(): the cache is dropped here, so the memory is freed).
        watch: the inputs the cache references (not copies); their fingerprints are kept so that
        backward detects an input modified in place in between (PyTorch's version counter)."""
        if not _mode.grad:
            self._cache = _NO_GRAD
            return
        self._cache = (backends.current(), cache, out.shape, out.dtype, tuple((a, fingerprint(a)) for a in watch))

    def _restore(self, grad):
        """-> (backend, cache) of the last forward, after checking ``grad`` against its output.
        The cache is used up: a second backward without a new forward is refused."""
        if self._cache is None:
            raise RuntimeError(f"{self.label}: backward() called before forward() "
                               f"(or after to()/a shape-only pass); run forward first")
        if self._cache is _NO_GRAD:
            raise RuntimeError(f"{self.label}: backward() after a forward run under npunet.no_grad() / "
                               f"inference_mode(), which keeps nothing for backward; run the forward "
                               f"outside the no_grad block to train")
        if self._cache is _USED:
            raise RuntimeError(f"{self.label}: backward() called a second time after one forward(); the first "
                               f"backward used up what the forward kept (as PyTorch frees its graph). "
                               f"Run forward again before another backward")
        ops, cache, shape, dtype, watched = self._cache
        check_grad(self, grad, shape, dtype)
        for i, (a, fp) in enumerate(watched):
            if fingerprint(a) != fp:
                raise RuntimeError(f"{self.label}: input {i} {tuple(a.shape)} was modified in place between forward "
                                   f"and backward; the backward needs it unchanged (as PyTorch's autograd), so the "
                                   f"gradients would be wrong. Modify a copy (x = x.copy()), or run forward again")
        self._cache = _USED
        return ops, cache

    def kept(self, inputs, out):
        """What this layer keeps from forward for backward: (arrays it references, bytes it
        allocated itself).  Arrays are counted once however many layers keep them."""
        return [], 0

    def extra_repr(self):
        return ""

    def __repr__(self):
        lines = [f"{type(self).__name__}({self.extra_repr()}"]
        for n, m in self._modules.items():
            sub = repr(m).replace("\n", "\n  ")
            lines.append(f"  ({n}): {sub}")
        return lines[0] + ")" if len(lines) == 1 else "\n".join(lines) + "\n)"


# ---------------------------------------------------------------- PyTorch names npunet does without

_DEVICES = ("cuda", "mps", "xpu", "meta", "cpu")


def _no_device(module, call):
    raise RuntimeError(f"{type(module).__name__}{call}: npunet runs on the CPU only (NumPy + Numba); "
                       f"drop the call (choose speed with npunet.set_backend('fast'))")


_TORCH_ONLY = {
    "register_forward_hook": "call the layers yourself or trace them with npunet.summary(model, shape) "
                             "(npunet.nn.module.shape_only() lists every leaf call)",
    "register_forward_pre_hook": "call the layers yourself or trace them with npunet.summary(model, shape)",
    "register_full_backward_hook": "backward is explicit: wrap model.backward(grad) or the layer's backward",
    "register_backward_hook": "backward is explicit: wrap model.backward(grad) or the layer's backward",
    "compile": "there is no compiler; the fast backend is npunet.set_backend('fast') (the default)",
    "to_empty": "modules are created with their arrays; use .to(np.float32)",
    "share_memory": "npunet has no tensors to share; pass state_dict() arrays",
    "bfloat16": "npunet computes in float32 or float64 only; use .float()",
}
