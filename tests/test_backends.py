"""The two backends: every op gives the same forward and gradients in both (float64, relative
difference <= 1e-10), whole models agree, the switch behaves, the reference stays a textbook."""
import ast
import inspect

import numpy as np
import pytest

import npunet
from npunet import backends, gradcheck, nn
from npunet.backends import blas, fast, reference
from npunet.gradcheck import _flatten, _unflatten
from npunet.models import UNet, UNet3Plus, UNetPlusPlus

SAME = 1e-10


def rel(a, b, floor=0.0):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), floor, 1e-300)) if b.size else 0.0


def distinct(rng, shape):
    """No ties (max-pool's argmax must be unique for the two backends to pick the same element)."""
    n = int(np.prod(shape))
    return (rng.permutation(n) + rng.uniform(0, 0.1, n)).reshape(shape) / n


# (op, forward args after x, inputs' shapes)
OP_CASES = [
    ("conv2d", lambda r: dict(weight=r.standard_normal((4, 3, 3, 3)), bias=r.standard_normal(4), stride=1, padding=1), [(2, 3, 7, 5)]),
    ("conv2d", lambda r: dict(weight=r.standard_normal((3, 2, 2, 2)), bias=None, stride=2, padding=0), [(1, 2, 8, 8)]),
    ("conv2d", lambda r: dict(weight=r.standard_normal((2, 1, 3, 2)), bias=r.standard_normal(2), stride=2, padding=1), [(2, 1, 6, 9)]),
    ("conv2d", lambda r: dict(weight=r.standard_normal((4, 2, 3, 3)), bias=r.standard_normal(4), stride=1, padding=0, groups=2), [(2, 4, 5, 6)]),
    ("conv2d", lambda r: dict(weight=r.standard_normal((3, 1, 3, 3)), bias=r.standard_normal(3), stride=1, padding=1, groups=3), [(1, 3, 6, 5)]),
    ("conv2d", lambda r: dict(weight=r.standard_normal((3, 2, 2, 3)), bias=None, stride=(2, 1), padding=(1, 0)), [(1, 2, 9, 7)]),
    ("conv_transpose2d", lambda r: dict(weight=r.standard_normal((3, 4, 2, 2)), bias=r.standard_normal(4), stride=2), [(2, 3, 4, 5)]),
    ("conv_transpose2d", lambda r: dict(weight=r.standard_normal((2, 3, 3, 3)), bias=r.standard_normal(3), stride=2, padding=1), [(1, 2, 5, 4)]),
    ("conv_transpose2d", lambda r: dict(weight=r.standard_normal((3, 2, 3, 3)), bias=None, stride=2, padding=1, output_padding=1), [(1, 3, 3, 5)]),
    ("conv_transpose2d", lambda r: dict(weight=r.standard_normal((4, 3, 3, 3)), bias=r.standard_normal(6), stride=2, padding=1, groups=2), [(2, 4, 3, 4)]),
    ("maxpool2d", lambda r: dict(kernel_size=2), [(2, 3, 7, 6)]),
    ("maxpool2d", lambda r: dict(kernel_size=3, stride=2, padding=1), [(1, 2, 9, 8)]),
    ("maxpool2d", lambda r: dict(kernel_size=(3, 2), stride=1), [(2, 2, 8, 7)]),
    ("maxpool2d", lambda r: dict(kernel_size=4, stride=4), [(1, 2, 16, 12)]),
    ("adaptive_maxpool2d", lambda r: dict(output_size=1), [(2, 3, 7, 5)]),
    ("adaptive_maxpool2d", lambda r: dict(output_size=(2, 3)), [(2, 3, 7, 5)]),
    ("interpolate", lambda r: dict(size=(8, 10), mode="bilinear", align_corners=True), [(2, 3, 4, 5)]),
    ("interpolate", lambda r: dict(size=(16, 20), mode="bilinear", align_corners=False, scale=(4.0, 4.0)), [(2, 3, 4, 5)]),
    ("interpolate", lambda r: dict(size=(7, 11), mode="bilinear", align_corners=False), [(2, 3, 4, 5)]),
    ("interpolate", lambda r: dict(size=(3, 4), mode="bilinear", align_corners=True), [(2, 3, 4, 5)]),
    ("interpolate", lambda r: dict(size=(8, 10), mode="nearest", scale=(2.0, 2.0)), [(2, 3, 4, 5)]),
    ("interpolate", lambda r: dict(size=(5, 9), mode="nearest"), [(2, 3, 4, 5)]),
    ("conv2d", lambda r: dict(weight=r.standard_normal((4, 1, 5, 5)), bias=r.standard_normal(4), stride=2, padding=2, groups=4), [(2, 4, 9, 8)]),
    ("conv2d", lambda r: dict(weight=r.standard_normal((3, 1, 3, 3)), bias=None, stride=1, padding=0, groups=3), [(1, 3, 6, 7)]),
    ("adaptive_avgpool2d", lambda r: dict(output_size=1), [(2, 3, 7, 5)]),
    ("adaptive_avgpool2d", lambda r: dict(output_size=(2, 3)), [(2, 3, 7, 5)]),
    ("zero_pad2d", lambda r: dict(padding=(0, 1, 2, 1)), [(2, 3, 5, 4)]),
    ("zero_pad2d", lambda r: dict(padding=(-1, 2, 1, -2)), [(2, 3, 6, 5)]),
    ("pad2d", lambda r: dict(padding=(1, 3, 2, 0), mode="reflect"), [(2, 3, 5, 4)]),
    ("pad2d", lambda r: dict(padding=(4, 1, 0, 6), mode="replicate"), [(2, 3, 3, 2)]),
    ("pad2d", lambda r: dict(padding=(2, 2, 3, 1), mode="circular"), [(1, 2, 3, 4)]),
    ("relu6", lambda r: {}, [(2, 4, 3, 5)]),
    ("silu", lambda r: {}, [(2, 4, 3, 5)]),
    ("relu", lambda r: {}, [(2, 4, 3, 5)]),
    ("sigmoid", lambda r: {}, [(2, 4, 3, 5)]),
    ("crop_concat", lambda r: {}, [(2, 3, 9, 8), (2, 2, 5, 4)]),
    ("crop_concat", lambda r: {}, [(1, 3, 9, 8), (1, 2, 5, 4)]),
    ("center_crop", lambda r: dict(size=(5, 4)), [(2, 3, 9, 8)]),
    ("concat", lambda r: {}, [(1, 1, 3, 3), (1, 2, 3, 3), (1, 3, 3, 3)]),
    ("add", lambda r: {}, [(2, 3, 9, 8), (1, 3, 1, 8)]),
    ("mul", lambda r: {}, [(2, 3, 9, 8), (2, 1, 1, 1)]),
    ("mul", lambda r: {}, [(2, 3, 9, 8), (2, 3, 1, 1)]),     # squeeze-and-excitation: the fast path
    ("mul", lambda r: {}, [(2, 3, 1, 1), (2, 3, 9, 8)]),
]


def _inputs(rng, op, shapes):
    if "maxpool" in op:
        return [distinct(rng, s) for s in shapes]
    scale = 4.0 if op == "relu6" else 1.0  # reach both of ReLU6's corners
    return [rng.standard_normal(s) * scale for s in shapes]


def _run_pair(ops, op, inputs, kw, dout_seed):
    out, cache = getattr(ops, op + "_forward")(*inputs, **kw)
    dout = np.random.default_rng(dout_seed).standard_normal(out.shape)
    dout_before = dout.copy()
    grads = getattr(ops, op + "_backward")(dout, cache)
    np.testing.assert_array_equal(dout, dout_before)  # the incoming gradient is never written
    return out, grads if isinstance(grads, tuple) else (grads,)


@pytest.mark.parametrize("op,args,shapes", OP_CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(OP_CASES)])
def test_op_agrees_across_backends(op, args, shapes, rng):
    inputs = _inputs(rng, op, shapes)
    kw = args(rng)
    copies = [x.copy() for x in inputs]
    out_f, g_f = _run_pair(fast, op, inputs, kw, 7)
    out_r, g_r = _run_pair(reference, op, inputs, kw, 7)
    for x, c in zip(inputs, copies):
        np.testing.assert_array_equal(x, c)  # inputs untouched
    assert out_f.shape == out_r.shape and out_f.dtype == out_r.dtype == np.float64
    assert rel(out_f, out_r) <= SAME
    assert len(g_f) == len(g_r)
    for a, b in zip(g_f, g_r):
        if b is None:
            assert a is None
            continue
        assert a.shape == b.shape and rel(a, b) <= SAME
        assert not any(np.shares_memory(a, x) for x in inputs)


@pytest.mark.parametrize("training", [True, False])
def test_batchnorm_agrees_across_backends(training, rng):
    x = rng.standard_normal((3, 4, 5, 6)) * 2 + 1
    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    rm, rv = rng.standard_normal(4), rng.uniform(0.5, 2, 4)
    res = {}
    for ops in (fast, reference):
        out, cache, nrm, nrv = ops.batchnorm2d_forward(x, gamma, beta, rm, rv, training, 0.1, 1e-5)
        grads = ops.batchnorm2d_backward(np.random.default_rng(3).standard_normal(x.shape), cache)
        res[ops.__name__] = (out, nrm, nrv) + grads
    for a, b in zip(res[fast.__name__], res[reference.__name__]):
        assert rel(a, b) <= SAME


def test_stochastic_depth_agrees_and_drops_whole_samples(rng):
    x = rng.standard_normal((8, 3, 4, 5))
    outs = []
    for ops in (fast, reference):
        out, mask = ops.stochastic_depth_forward(x, 0.5, np.random.default_rng(5))
        outs.append((out, ops.stochastic_depth_backward(np.ones_like(out), mask)))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)
    kept = outs[0][0].reshape(8, -1)
    assert {tuple(np.unique(np.isclose(k, 2 * x[i].reshape(-1)))) for i, k in enumerate(kept) if k.any()} == {(True,)}
    assert 0 < sum(k.any() for k in kept) < 8   # some samples dropped whole, some kept (x 1/(1 - p))


def test_dropout_masks_and_gradients_agree(rng):
    x = rng.standard_normal((2, 3, 4, 5))
    outs = []
    for ops in (fast, reference):
        out, mask = ops.dropout_forward(x, 0.3, np.random.default_rng(5), channelwise=True)
        outs.append((out, ops.dropout_backward(np.ones_like(out), mask)))
    for a, b in zip(*outs):
        np.testing.assert_array_equal(a, b)


# ---------------------------------------------------------------- the reference pairs are gradient-checked

@pytest.mark.parametrize("op,args,shapes", [c for c in OP_CASES if c[0] not in ("relu", "relu6")],
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(OP_CASES) if c[0] not in ("relu", "relu6")])
def test_reference_pair_gradchecks(op, args, shapes, rng):
    inputs = _inputs(rng, op, shapes)
    kw = args(rng)
    fwd, bwd = getattr(reference, op + "_forward"), getattr(reference, op + "_backward")
    cache = {}

    def forward(*xs):
        out, cache["c"] = fwd(*xs, **kw)
        return out

    def backward(g):
        return bwd(g, cache["c"])

    r = npunet.gradcheck_fn(forward, backward, inputs)
    assert r.max_rel_error <= 1e-6, str(r)


def test_reference_conv_weight_gradients_gradcheck(rng):
    """The parameter gradients of the reference conv pairs, against central differences."""
    x = rng.standard_normal((2, 4, 6, 5))
    for fwd, bwd, w in [(reference.conv2d_forward, reference.conv2d_backward, rng.standard_normal((6, 2, 3, 3))),
                        (reference.conv_transpose2d_forward, reference.conv_transpose2d_backward,
                         rng.standard_normal((4, 3, 3, 2)))]:
        b, cache = rng.standard_normal(6), {}

        def forward(w_, b_):
            out, cache["c"] = fwd(x, w_, b_, 2, 1, groups=2)
            return out

        def backward(g):
            _, dw, db = bwd(g, cache["c"])
            return dw, db

        r = npunet.gradcheck_fn(forward, backward, (w, b))
        assert r.max_rel_error <= 1e-6, str(r)


# ---------------------------------------------------------------- whole models

def _model_grads(m, x, backend):
    rngs = [mod._rng for mod in m.modules() if hasattr(mod, "_rng")]
    states = [r.bit_generator.state for r in rngs]
    saved = m.state_dict()
    with npunet.backend(backend):
        m.zero_grad()
        y = m(x)
        ys = _flatten(y)
        g = [np.random.default_rng(11).standard_normal(t.shape) for t in ys]
        dx = m.backward(_unflatten(list(g), y))
        grads = {k: p.grad.copy() for k, p in m.named_parameters()}
        buffers = {k: np.array(v, copy=True) for k, v in m.named_buffers()}
    for r, s in zip(rngs, states):  # replay the same dropout masks for the other backend
        r.bit_generator.state = s
    m.load_state_dict(saved)
    return ys, dx, grads, buffers


@pytest.mark.parametrize("make,shape", [
    (lambda: UNet(1, 2, base_channels=4, depth=2), (2, 1, 44, 52)),
    (lambda: UNet(1, 2, base_channels=4, depth=2, padding="same", batch_norm=True, dropout=0.3), (2, 1, 16, 16)),
    (lambda: UNet(1, 2, base_channels=4, depth=2, padding="same", up_mode="bilinear", block="residual"), (1, 1, 16, 12)),
    (lambda: UNetPlusPlus(1, 2, filters=(2, 3, 4), depth=2, deep_supervision=True), (2, 1, 8, 12)),
    (lambda: UNet3Plus(1, 1, filters=(2, 2, 3, 3, 4), cat_channels=2, cgm=True, deep_supervision=True), (2, 1, 16, 16)),
    (lambda: UNet3Plus(1, 1, filters=(2, 2, 3, 3, 4), cat_channels=2, cgm=True).eval(), (2, 1, 16, 16)),
], ids=["unet-valid", "unet-same-bn-dropout", "unet-bilinear-residual", "unetpp-ds", "unet3plus-cgm-ds", "unet3plus-cgm-eval"])
def test_models_agree_across_backends(make, shape, rng):
    m = make().to(np.float64)
    x = rng.standard_normal(shape)
    ys_f, dx_f, g_f, b_f = _model_grads(m, x, "fast")
    ys_r, dx_r, g_r, b_r = _model_grads(m, x, "reference")
    for a, b in zip(ys_f, ys_r):
        assert rel(a, b) <= SAME
    assert rel(dx_f, dx_r) <= SAME
    scale = max(np.abs(v).max() for v in g_r.values())
    assert set(g_f) == set(g_r)
    for k in g_r:  # a conv bias ahead of BatchNorm has a true gradient of 0: compare against the model's scale
        assert rel(g_f[k], g_r[k], 1e-3 * scale) <= SAME, k
    for k in b_r:
        assert rel(b_f[k], b_r[k]) <= SAME, k


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_float32_and_float64_preserved_by_both_backends(dtype, rng):
    m = UNet(1, 2, base_channels=4, depth=2, padding="same", batch_norm=True).to(dtype)
    x = rng.standard_normal((1, 1, 16, 16)).astype(dtype)
    outs = {}
    for b in backends.NAMES:
        with npunet.backend(b):
            y = m(x)
            dx = m.backward(np.ones_like(y))
            assert y.dtype == dx.dtype == dtype
            outs[b] = y
    assert rel(outs["fast"], outs["reference"]) <= (1e-4 if dtype == np.float32 else SAME)


# ---------------------------------------------------------------- the switch

def test_backend_switch_and_context():
    assert npunet.get_backend() == "fast"
    with npunet.backend("reference") as ops:
        assert ops is reference and backends.current() is reference
        with npunet.backend("fast"):
            assert npunet.get_backend() == "fast"
        assert npunet.get_backend() == "reference"
    assert npunet.get_backend() == "fast"
    try:
        npunet.set_backend("reference")
        assert npunet.get_backend() == "reference"
    finally:
        npunet.set_backend("fast")
    with pytest.raises(ValueError, match="'reference', 'fast'"):
        npunet.set_backend("numba")
    assert npunet.functional.conv2d_forward is fast.conv2d_forward
    with npunet.backend("reference"):
        assert npunet.functional.conv2d_forward is reference.conv2d_forward


def test_backward_uses_the_backend_of_its_forward(rng):
    m = nn.MaxPool2d(2)  # the two backends' caches differ: mixing them would fail
    x = distinct(rng, (1, 2, 4, 4))
    with npunet.backend("reference"):
        y = m(x)
    dx = m.backward(np.ones_like(y))
    assert dx.shape == x.shape and dx.sum() == y.size


def test_both_backends_export_every_op():
    for op in backends.OPS:
        for mod in (fast, reference):
            assert callable(getattr(mod, op + "_forward")) and callable(getattr(mod, op + "_backward")), (mod, op)
            assert (inspect.signature(getattr(fast, op + "_forward")).parameters.keys()
                    == inspect.signature(getattr(reference, op + "_forward")).parameters.keys()), op


def test_reference_is_plain_numpy_and_every_backward_fits_one_screen():
    from npunet.backends import reference_joins
    for module in (reference, reference_joins):
        src = inspect.getsource(module)
        imported = {a.name.split(".")[0] for n in ast.walk(ast.parse(src)) if isinstance(n, ast.Import) for a in n.names}
        imported |= {n.module or "" for n in ast.walk(ast.parse(src)) if isinstance(n, ast.ImportFrom)}
        assert imported <= {"numpy", "geometry", "reference_joins"}, imported
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if fn.__module__ == module.__name__:
                assert len(inspect.getsource(fn).splitlines()) <= 40, f"{name} no longer fits one screen"
    pairs = {n for n, f in inspect.getmembers(reference_joins, inspect.isfunction) if n.endswith("_forward")}
    assert pairs and all(getattr(reference, n) is getattr(reference_joins, n) for n in pairs)


# ---------------------------------------------------------------- the layer protocol

def test_second_backward_is_refused(rng):
    m = UNet(1, 2, base_channels=2, depth=1, padding="same").to(np.float64)
    x = rng.standard_normal((1, 1, 8, 8))
    y = m(x)
    m.backward(np.ones_like(y))
    g = m.outc.weight.grad.copy()
    with pytest.raises(RuntimeError, match=r"Conv2d\('outc'\): backward\(\) called a second time"):
        m.backward(np.ones_like(y))
    np.testing.assert_array_equal(m.outc.weight.grad, g)  # nothing doubled
    y = m(x)  # a new forward allows a new backward
    m.backward(np.ones_like(y))
    np.testing.assert_allclose(m.outc.weight.grad, 2 * g)
    with pytest.raises(RuntimeError, match="before forward"):
        nn.ReLU().backward(np.ones(3))


def test_join_gradients_are_new_arrays_even_for_one_image(rng):
    for m, xs in [(nn.Concat(), (rng.standard_normal((1, 2, 3, 3)), rng.standard_normal((1, 1, 3, 3)))),
                  (nn.CropConcat(), (rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((1, 1, 3, 3))))]:
        for b in backends.NAMES:
            with npunet.backend(b):
                y = m(*xs)
                g = rng.standard_normal(y.shape)
                assert not any(np.shares_memory(d, g) for d in m.backward(g))


def test_output_shape_inference_lives_in_the_base_class():
    own = [cls.__name__ for cls in vars(nn.layers).values()
           if isinstance(cls, type) and issubclass(cls, nn.Module) and cls is not nn.Module and "_infer" in vars(cls)]
    assert own == []
    from npunet.models.summary import trace_shapes
    out, calls = trace_shapes(UNet3Plus(1, 1, filters=(2, 2, 3, 3, 4), cat_channels=2,
                                        cgm=True).eval(), (1, 1, 32, 32))
    assert out.shape == (1, 1, 32, 32) and len(calls) > 50


# ---------------------------------------------------------------- threads

def test_blas_thread_count_restored_after_every_conv(rng, monkeypatch):
    if not blas.available():
        pytest.skip("threadpoolctl sees no controllable BLAS here")
    before = blas.num_threads()
    monkeypatch.setattr(blas, "plan", lambda: (2, 1))  # force the pipelines, whatever the machine
    m = nn.Conv2d(32, 64, 3, padding=1)
    x = rng.standard_normal((2, 32, 40, 40)).astype(np.float32)
    seen = []
    real = blas.limited

    def spy(threads):
        seen.append(threads)
        return real(threads)

    monkeypatch.setattr(blas, "limited", spy)
    # the im2col path runs the pipelines; small tiles: many of them
    with npunet.fast_options(winograd=False, tile_elems=288 * 42 * 4):
        y = m(x)
        m.backward(np.ones_like(y))
        assert seen == [1, 1]  # forward and backward both ran the pipelines
        assert blas.num_threads() == before
        with pytest.raises(ValueError):  # an exception inside the pipelines restores it too
            fast.conv2d_forward(x, np.ones((64, 31, 3, 3), np.float32), None, 1, 1)
    assert blas.num_threads() == before


def test_pipeline_plan_follows_the_cores(monkeypatch):
    monkeypatch.setattr(blas, "available", lambda: True)
    for n, want in [(1, (1, None)), (2, (2, 1)), (3, (3, 1)), (4, (4, 1)), (8, (4, 2)), (16, (4, 4))]:
        monkeypatch.setattr(blas, "cores", lambda n=n: n)
        assert blas.plan() == want
    monkeypatch.undo()
    monkeypatch.setenv("NPUNET_BLAS_PIPELINES", "0")
    assert blas.plan() == (1, None)


def test_gradcheck_of_a_model_on_the_reference_backend(rng):
    with npunet.backend("reference"):
        m = UNet(1, 2, base_channels=2, depth=2, padding="same", batch_norm=True).to(np.float64)
        r = gradcheck(m, rng.standard_normal((2, 1, 8, 8)), max_per_tensor=6)
    assert r.max_rel_error <= 1e-5, str(r)


def test_npunet_gradcheck_command_covers_both_backends(capsys):
    from npunet.gradcheck_suite import run_suite
    assert run_suite(verbose=True)
    lines = capsys.readouterr().out.splitlines()
    assert sum(l.startswith("ok   fast") for l in lines) == sum(l.startswith("ok   reference") for l in lines) >= 17


# ---------------------------------------------------------------- Winograd F(2x2, 3x3) in the fast backend

@pytest.mark.parametrize("m", [2, 4])
@pytest.mark.parametrize("shape,O,padding,band", [
    ((2, 3, 8, 10), 4, 1, None), ((1, 2, 9, 7), 3, 0, None), ((2, 5, 7, 6), 2, 2, None),
    ((3, 4, 11, 9), 5, 1, 64 * 16), ((1, 3, 12, 13), 2, 1, 1), ((1, 2, 18, 9), 3, 1, 1),  # small bands
    ((3, 4, 11, 9), 5, 1, 1), ((5, 3, 10, 14), 4, 1, 2000)])   # batches: one pipeline per core, many bands
def test_winograd_conv_equals_the_reference_conv(m, shape, O, padding, band, rng):
    """Run in float64 (where the dispatcher would not choose it): the Winograd conv, its input and
    weight gradients equal the direct convolution's to rounding, however the tiles are banded, for a
    single image (every stage on all cores) and for batches (a pipeline of bands per core)."""
    bands = dict(winograd_band=band, winograd_pipe_band=band) if band else {}
    x, w, b = rng.standard_normal(shape), rng.standard_normal((O, shape[1], 3, 3)), rng.standard_normal(O)
    with npunet.fast_options(**bands):
        y, cache = fast.winograd.forward(x, w, b, (padding, padding), m)
        yr, cr = reference.conv2d_forward(x, w, b, 1, padding)
        g = rng.standard_normal(y.shape)
        g0, x0 = g.copy(), x.copy()
        grads, grads_r = cache.backward(g), reference.conv2d_backward(g, cr)
    tol = 1e-13 if m == 2 else 1e-12
    assert rel(y, yr) < tol
    for a, r in zip(grads, grads_r):
        assert a.shape == r.shape and a.dtype == r.dtype and rel(a, r) < tol
    assert (g == g0).all() and (x == x0).all()                      # inputs untouched


@pytest.mark.parametrize("N", [8, 6, 9, 2, 3])
def test_winograd_batch_pipelines_split_the_images_evenly(N, monkeypatch):
    """On a batch, the Winograd forward (as its backward) gives each core a pipeline over N / cores whole
    images, each banded within the budget inside its pipeline; the bands' images cover the batch once.
    (Splitting one list of budget-sized bands gave 8 images as 7 + 1, 6 as 2 + 4: one core did most.)"""
    from npunet.backends.fast import winograd
    seen, ranges = [], []
    real_input = winograd.transforms(2).input

    def split(kernel, n, *args):                    # as kernels.util.split on two cores, recording the ranges
        bounds = [n * i // 2 for i in range(3)]
        for a, b in zip(bounds, bounds[1:]):
            ranges.append((a, b))
            kernel(a, b, *args)

    def record_input(c0, c1, x, ph, pw, n0, n1, *rest):
        seen.extend(range(n0, n1))
        return real_input(c0, c1, x, ph, pw, n0, n1, *rest)

    monkeypatch.setattr(winograd, "split", split)
    monkeypatch.setattr(winograd.blas, "cores", lambda: 2)
    monkeypatch.setattr(winograd, "transforms", lambda m: winograd.Transforms(
        *(record_input if name == "input" else f for name, f in zip(winograd.Transforms._fields,
                                                                      winograd.Transforms(*_transforms(m))))))
    x = np.ones((N, 8, 8, 8), np.float32)
    per_image = 16 * 8 * 4 * 4                      # F(2x2): 16 positions x 8 channels x 4 x 4 tiles
    with npunet.fast_options(winograd_pipe_band=per_image * max(1, N - 1)):   # N - 1 images fit one band
        winograd.forward(x, np.ones((8, 8, 3, 3), np.float32), None, (1, 1), 2)
    pipeline_ranges = ranges[-2:]                   # the pipelines' split (the weights' split came first)
    assert pipeline_ranges == [(0, N // 2), (N // 2, N)]
    assert sorted(seen) == list(range(N))


def _transforms(m):
    from npunet.kernels import winograd as k
    return (k.weight_transform, k.input_transform, k.output_transform, k.output_transform_adjoint,
            k.input_transform_adjoint, k.weight_transform_adjoint)


@pytest.mark.parametrize("m", [2, 4])
def test_winograd_gradients_gradcheck(m, rng):
    """The Winograd backward is the adjoint of its own forward: central differences, float64."""
    x, w, b = rng.standard_normal((2, 3, 7, 6)), rng.standard_normal((4, 3, 3, 3)), rng.standard_normal(4)
    cache = {}

    def forward(x_, w_, b_):
        out, cache["c"] = fast.winograd.forward(x_, w_, b_, (1, 1), m)
        return out

    r = npunet.gradcheck_fn(forward, lambda g: cache["c"].backward(g), (x, w, b))
    assert r.max_rel_error <= 1e-6, str(r)


def test_winograd_dispatch(rng):
    with npunet.fast_options(direct=False):
        _winograd_dispatch()


def _winograd_dispatch():
    """float32 3x3 stride-1 convs with >= winograd_min_channels input channels and >= winograd_min_tiles
    output tiles go through Winograd; float64 (the checks), 1-channel inputs, small maps, strides, groups
    and other kernels stay on im2col.  (With the direct path off: it takes few channels first.)"""
    def path(shape, wshape, dtype=np.float32, **kw):
        x, w = np.ones(shape, dtype), np.ones(wshape, dtype)
        return isinstance(fast.conv2d_forward(x, w, None, **kw)[1], fast.winograd.WinogradCache)
    assert path((1, 8, 16, 16), (4, 8, 3, 3), padding=1)
    assert not path((1, 8, 16, 16), (4, 8, 3, 3), np.float64, padding=1)
    assert not path((1, 1, 16, 16), (4, 1, 3, 3), padding=1)
    assert not path((1, 8, 16, 16), (4, 8, 3, 3), stride=2)
    assert not path((1, 8, 16, 16), (4, 4, 3, 3), groups=2)
    assert not path((1, 8, 16, 16), (4, 8, 1, 1))
    assert not path((1, 8, 8, 8), (4, 8, 3, 3), padding=1)            # 16 tiles: im2col is faster
    assert path((4, 256, 8, 8), (256, 256, 3, 3), padding=1)         # 64 tiles ...
    assert not path((4, 512, 8, 8), (512, 512, 3, 3), padding=1)     # ... but wide layers need 128
    assert path((8, 512, 8, 8), (512, 512, 3, 3), padding=1)
    with npunet.fast_options(winograd_wide_min_tiles=64):
        assert path((4, 512, 8, 8), (512, 512, 3, 3), padding=1)
    tile = lambda shape, O=2: fast.conv2d_forward(np.ones(shape, np.float32), np.ones((O, shape[1], 3, 3), np.float32),
                                                  None, padding=1)[1].m
    assert tile((2, 8, 64, 64)) == 4 and tile((1, 8, 16, 16)) == 2   # F(4x4) with >= 512 4x4 tiles ...
    assert tile((8, 8, 16, 16)) == 4 and tile((8, 8, 16, 16), O=129) == 2   # ... or 128 with <= 128 channels
    assert tile((4, 8, 16, 16)) == 2


def test_fast_options_restore_on_exit_and_reject_bad_values(rng):
    """fast_options changes the knobs for its block only (also when the block raises) and names a bad knob."""
    from npunet.backends.fast.options import OPTIONS
    x, w = np.ones((1, 24, 16, 16), np.float32), np.ones((24, 24, 3, 3), np.float32)
    winograd = lambda: isinstance(fast.conv2d_forward(x, w, None, padding=1)[1], fast.winograd.WinogradCache)  # noqa: E731
    assert winograd() and OPTIONS.winograd and OPTIONS.tile_elems == 1 << 21
    with npunet.fast_options(winograd=False, tile_elems=400) as opts:
        assert not winograd() and opts.tile_elems == 400
    assert winograd() and OPTIONS.tile_elems == 1 << 21
    with pytest.raises(RuntimeError):
        with npunet.fast_options(winograd=False):
            raise RuntimeError("inside")
    assert OPTIONS.winograd
    with pytest.raises(TypeError, match="unknown option 'winogrand'"):
        with npunet.fast_options(winogrand=False):
            pass
    with pytest.raises(ValueError, match="winograd_tile must be None, 2 or 4, got 3"):
        with npunet.fast_options(winograd_tile=3):
            pass
    assert OPTIONS.winograd_tile is None
    for bad in (-1, 1.5, True):
        with pytest.raises(ValueError, match="winograd_wide_min_tiles must be a count >= 0, got"):
            with npunet.fast_options(winograd_wide_min_tiles=bad):
                pass
    assert OPTIONS.winograd_wide_min_tiles == 128


@pytest.mark.parametrize("m,bound", [(2, 5e-6), (4, 2e-5)])
def test_winograd_float32_error_bound(m, bound, rng):
    """Winograd in float32 against the float64 direct convolution, on a U-Net-like layer (He-initialised
    64 -> 64, ReLU-like input): max |error| / max |y| for y, dx and dW stays within 5e-6 for F(2x2, 3x3)
    (measured 2-7e-7, as im2col's 2-4e-7) and 2e-5 for F(4x4, 3x3) (measured 1-3e-6)."""
    x = np.maximum(rng.standard_normal((2, 64, 34, 34)), 0)
    w = rng.standard_normal((64, 64, 3, 3)) * np.sqrt(2 / (64 * 9))
    b = rng.standard_normal(64) * 0.1
    y64, c64 = reference.conv2d_forward(x, w, b, 1, 1)
    g = rng.standard_normal(y64.shape)
    d64 = reference.conv2d_backward(g, c64)
    f = np.float32
    with npunet.fast_options(winograd_tile=m):
        y32, c32 = fast.conv2d_forward(x.astype(f), w.astype(f), b.astype(f), 1, 1)
    assert isinstance(c32, fast.winograd.WinogradCache)
    d32 = fast.conv2d_backward(g.astype(f), c32)
    assert y32.dtype == f and all(d.dtype == f for d in d32)
    assert c32.m == m
    for a, r in zip((y32,) + tuple(d32), (y64,) + tuple(d64)):
        assert rel(a, r) < bound


@pytest.mark.parametrize("training", [True, False])
def test_fused_batchnorm_relu_equals_the_two_layers(training, rng):
    """Sequential(BatchNorm2d, ReLU) runs the backend's batchnorm2d_relu pair (one pass in the fast backend)
    and gives relu(bn(x)) exactly: output, input and parameter gradients and running statistics, on both
    backends; its backward includes the ReLU."""
    x = rng.standard_normal((2, 3, 5, 4)) * 2 + 0.3
    g = rng.standard_normal(x.shape)
    for name in ("reference", "fast"):
        with npunet.backend(name):
            a, b, relu = nn.BatchNorm2d(3).to(np.float64), nn.BatchNorm2d(3).to(np.float64), nn.ReLU()
            for m in (a, b):
                m.weight.data[:] = [1.5, -0.7, 0.2]
                m.bias.data[:] = [0.1, 0.4, -0.3]
                m.train(training)
            seq = nn.Sequential(b, nn.ReLU())
            y_two, y_one = relu(a(x)), seq(x)
            assert seq._fused == {0}
            assert rel(y_one, y_two) < 1e-14 and (y_one == 0).any()
            dx_two, dx_one = a.backward(relu.backward(g)), seq.backward(g)
            assert rel(dx_one, dx_two) < 1e-12
            for p, q in ((a.weight.grad, b.weight.grad), (a.bias.grad, b.bias.grad),
                         (a.running_mean, b.running_mean), (a.running_var, b.running_var)):
                assert rel(q, p) < 1e-12


def test_fused_batchnorm_relu_gradchecks(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    for ops in (reference, fast):
        cache = {}

        def forward(x_, g_, b_):
            out, cache["c"], _, _ = ops.batchnorm2d_relu_forward(x_, g_, b_, np.zeros(3), np.ones(3), True)
            return out

        r = npunet.gradcheck_fn(forward, lambda d: ops.batchnorm2d_relu_backward(d, cache["c"]), (x, gamma, beta))
        assert r.max_rel_error <= 1e-6, str(r)


def test_conv_bn_relu_blocks_fuse_outside_traces_only(rng):
    from npunet.models.blocks import ConvBNReLU, DoubleConv
    m = DoubleConv(2, 3, 1, batch_norm=True)
    m(np.zeros((1, 2, 6, 6), np.float32))
    assert m._fused == {1, 4}  # bn1 + relu1, bn2 + relu2
    s = npunet.summary(m, (1, 2, 6, 6), print_fn=lambda *a: None)
    assert [r["name"] for r in s["rows"]] == ["conv1", "bn1", "relu1", "conv2", "bn2", "relu2"]  # still listed
    assert not m._fused
    b = ConvBNReLU(2, 3)
    assert [k for k in b.state_dict()][:2] == ["conv.weight", "conv.bias"]
    b(np.zeros((1, 2, 6, 6), np.float32))
    assert b._fused == {1}
    c = ConvBNReLU(2, 3, batch_norm=False)
    assert [n for n, _ in c.named_children()] == ["conv", "relu"]
    assert (c(np.ones((1, 2, 6, 6), np.float32)) >= 0).all()


def test_no_model_file_imports_fusion_and_batchnorm_is_batchnorm_only():
    import pathlib
    for f in pathlib.Path(npunet.__file__).parent.joinpath("models").glob("*.py"):
        assert "bn_relu" not in f.read_text() and "fused" not in f.read_text(), f.name
    assert "relu" not in inspect.signature(reference.batchnorm2d_forward).parameters
    assert "relu" not in inspect.signature(fast.batchnorm2d_forward).parameters


@pytest.mark.parametrize("small", [0, 10 ** 9])
@pytest.mark.parametrize("shape,wshape,stride,padding", [
    ((2, 3, 9, 8), (5, 3, 3, 3), 1, 1), ((1, 4, 10, 9), (6, 4, 3, 3), 2, 1), ((2, 5, 7, 7), (4, 5, 1, 1), 1, 0),
    ((1, 3, 12, 11), (64, 3, 7, 7), 2, 3)])
def test_im2col_conv_tiled_and_small_map_paths_equal_the_reference(small, shape, wshape, stride, padding, rng):
    """The fast im2col conv splits small maps over channels and larger ones over tiles: both paths
    (forced here with small_map_columns and small tiles) equal the reference in float64."""
    x, w, b = rng.standard_normal(shape), rng.standard_normal(wshape), rng.standard_normal(wshape[0])
    with npunet.fast_options(small_map_columns=small, tile_elems=400):
        y, c = fast.conv2d_forward(x, w, b, stride, padding)
        yr, cr = reference.conv2d_forward(x, w, b, stride, padding)
        g = rng.standard_normal(y.shape)
        assert rel(y, yr) < SAME
        for a, r in zip(fast.conv2d_backward(g, c), reference.conv2d_backward(g, cr)):
            assert rel(a, r) < SAME


def test_small_map_gemms_have_no_junk_columns_and_split_channels_over_cores(rng, monkeypatch):
    """A small map's columns are exact (N * H_out * W_out, no padded-row junk: 25 % more products at
    8 x 8), and im2col / col2im run per channel range on the cores; still equal to the reference."""
    from npunet.backends import blas
    if blas.plan()[0] < 2:
        pytest.skip("no BLAS pipelines here (one core, NPUNET_BLAS_PIPELINES=0 or no threadpoolctl): no small-map path")
    x, w = rng.standard_normal((2, 5, 8, 8)), rng.standard_normal((6, 5, 3, 3))
    ranges = []
    real = fast.small_map.split
    monkeypatch.setattr(fast.small_map, "split", lambda f, n, *a: (ranges.append(n), real(f, n, *a)))
    y, c = fast.conv2d_forward(x, w, None, 1, 1)
    assert isinstance(c, fast.small_map.SmallMapCache)
    assert c.geo.row_len == c.geo.Wo == 8
    yr, cr = reference.conv2d_forward(x, w, None, 1, 1)
    g = rng.standard_normal(y.shape)
    assert rel(y, yr) < SAME
    for a, r in zip(fast.conv2d_backward(g, c), reference.conv2d_backward(g, cr)):
        assert (a is None and r is None) or rel(a, r) < SAME
    assert ranges.count(5) == 3            # im2col in forward and backward, col2im: over the 5 input channels


def test_pointwise_conv_path_equals_the_reference(rng):
    """1x1 stride-1 unpadded convs skip im2col (out[n] = W @ x[n]); equal to the reference in float64."""
    for N, C, O, bias in [(2, 5, 7, True), (1, 3, 2, False), (3, 16, 64, True)]:
        x, w = rng.standard_normal((N, C, 6, 5)), rng.standard_normal((O, C, 1, 1))
        b = rng.standard_normal(O) if bias else None
        y, c = fast.conv2d_forward(x, w, b)
        assert isinstance(c, fast.pointwise.PointwiseCache)
        yr, cr = reference.conv2d_forward(x, w, b)
        g = rng.standard_normal(y.shape)
        g0 = g.copy()
        assert rel(y, yr) < SAME
        for a, r in zip(fast.conv2d_backward(g, c), reference.conv2d_backward(g, cr)):
            assert (a is None and r is None) or rel(a, r) < SAME
        assert (g == g0).all()


@pytest.mark.parametrize("shape,wshape,bias", [((1, 4, 5, 6), (4, 3, 2, 2), True), ((3, 4, 5, 6), (4, 3, 2, 2), False),
                                               ((2, 3, 4, 3), (3, 2, 3, 2), True)])
def test_upconv_with_kernel_equal_to_stride_equals_the_reference(shape, wshape, bias, rng):
    """U-Net's up-conv (kernel = stride, no padding) takes a path of its own in the fast backend (one GEMM
    per image and a shuffle): output and every gradient equal the reference in float64, for one image
    (split over channels) and for batches (split over images)."""
    x, w = rng.standard_normal(shape), rng.standard_normal(wshape)
    b = rng.standard_normal(wshape[1]) if bias else None
    stride = wshape[2:]
    y, c = fast.conv_transpose2d_forward(x, w, b, stride=stride)
    assert isinstance(c, fast.upconv_disjoint.DisjointTapsCache)
    yr, cr = reference.conv_transpose2d_forward(x, w, b, stride=stride)
    assert rel(y, yr) < 1e-13
    g = rng.standard_normal(y.shape)
    g0 = g.copy()
    for a, r in zip(fast.conv_transpose2d_backward(g, c), reference.conv_transpose2d_backward(g, cr)):
        assert (a is None and r is None) or (a.shape == r.shape and rel(a, r) < 1e-13)
    assert (g == g0).all()


# ---------------------------------------------------------------- UNet 3+'s CGM gate, the settings object

def test_cgm_gate_pair_agrees_across_backends_and_gradchecks(rng):
    seg, cls = rng.standard_normal((3, 2, 4, 5)), rng.uniform(0, 1, (3, 2))
    cls[0] = (0.9, 0.1)  # one image whose organ is absent: its probabilities are 0
    dout = rng.standard_normal(seg.shape)
    out_r, cache_r = reference.cgm_gate_forward(seg, cls)
    out_f, cache_f = fast.cgm_gate_forward(seg, cls)
    assert np.array_equal(out_r, out_f) and not out_r[0].any()
    assert np.array_equal(reference.cgm_gate_backward(dout, cache_r), fast.cgm_gate_backward(dout, cache_f))
    cache = {}

    def forward(s):
        out, cache["c"] = reference.cgm_gate_forward(s, cls)
        return out

    r = npunet.gradcheck_fn(forward, lambda g: reference.cgm_gate_backward(g, cache["c"]), [seg])
    assert r.max_rel_error <= 1e-6, str(r)


@pytest.mark.parametrize("name", backends.NAMES)
def test_cgm_gate_is_finite_for_logits_of_1000(name):
    """sigmoid(-1000) = 0 without an overflow: the gate, its layer in UNet 3+ and apply_cgm use the
    backend's stable sigmoid (1 / (1 + exp(1000)) overflows)."""
    from npunet.models import apply_cgm
    from npunet.models.unet3plus import CGMGate
    seg = np.array([[[[1000.0, -1000.0]]], [[[1000.0, -1000.0]]]], np.float32)   # (2, 1, 1, 2)
    cls = np.array([[0.2, 0.8], [0.7, 0.3]], np.float32)                          # present, absent
    with np.errstate(over="raise", invalid="raise"), npunet.backend(name):
        out, cache = getattr(backends, name).cgm_gate_forward(seg, cls)
        d = getattr(backends, name).cgm_gate_backward(np.ones_like(seg), cache)
        gate = CGMGate()
        by_layer = gate(seg, cls)
        d_layer, d_cls = gate.backward(np.ones_like(seg))
        by_function = [apply_cgm(seg, cls, m) for m in ("probabilities", "logits")]
    assert out.dtype == d.dtype == by_layer.dtype == np.float32 and d_cls is None
    assert out.ravel().tolist() == [1, 0, 0, 0] and not d.any() and not d_layer.any()
    assert np.array_equal(by_layer, out) and np.array_equal(by_function[0], out)
    assert by_function[1].ravel().tolist() == [1, 0, 0.5, 0.5]


def test_one_settings_object_behind_the_switches():
    """set_backend / backend() / no_grad / set_checks / fast_options read and write one object;
    all but the fast options belong to the thread."""
    import threading
    from npunet.settings import settings
    assert settings.backend == npunet.get_backend() == "fast" and settings.grad and settings.check_finite is True
    with npunet.backend("reference"):
        assert settings.backend == "reference"
        seen = []
        t = threading.Thread(target=lambda: seen.append((settings.backend, npunet.get_backend())))
        t.start(), t.join()
        assert seen == [("fast", "fast")]
    assert settings.backend == "fast"
    with npunet.no_grad():
        assert settings.grad is False and not npunet.is_grad_enabled()
    nn.set_checks(finite="every")
    try:
        assert settings.check_finite == "every"
    finally:
        nn.set_checks(finite=True)
    with npunet.fast_options(winograd=False) as opts:
        assert opts is settings.fast is fast.OPTIONS and settings.fast.winograd is False
    assert settings.fast.winograd is True


def test_dropout_draws_from_the_generator_it_is_given(rng):
    x = rng.standard_normal((2, 3, 4, 4))
    g = npunet.manual_seed(5)
    assert g is npunet.init.rng()
    a, b = nn.Dropout(0.5, generator=g), nn.Dropout2d(0.5, generator=g)
    out_a, out_b = a(x), b(x)
    mine = np.random.default_rng(5)  # the same draws, in the same order, at forward time
    assert np.array_equal(out_a, reference.dropout_forward(x, 0.5, mine)[0])
    assert np.array_equal(out_b, reference.dropout_forward(x, 0.5, mine, True)[0])
    sd = nn.StochasticDepth(0.5, generator=g)
    assert np.array_equal(sd(x), reference.stochastic_depth_forward(x, 0.5, mine)[0])
    with pytest.raises(ValueError, match="Dropout: give seed or generator, not both"):
        nn.Dropout(0.5, seed=1, generator=g)
    with pytest.raises(TypeError, match="StochasticDepth: generator must be a numpy.random.Generator"):
        nn.StochasticDepth(0.5, generator=1)
    npunet.manual_seed(0)


@pytest.mark.parametrize("N,R,row_len,col_rows", [(4, 128, 128, 147), (1, 128, 128, 147), (1, 570, 572, 576),
                                                  (3, 100, 100, 2000), (2, 64, 64, 16), (2, 64, 64, 4608),
                                                  (4, 13, 2 ** 19, 1), (5, 37, 300, 500)])
def test_im2col_row_tiles_are_equal_and_shared_evenly_by_two_pipelines(N, R, row_len, col_rows):
    """RowTiles cuts an image into blocks of equal rows within the column budget, so the two pipelines,
    which take tiles in turns, get the same work to within one tile (rows 0-111 and 111-128 of every
    image gave one pipeline all the large tiles: ResNet's 7x7 stem ran on one core)."""
    from npunet.backends.fast.options import OPTIONS
    from npunet.backends.fast.tiling import RowTiles
    tiles = list(RowTiles(N, R, row_len, col_rows))
    covered = sorted((n, r) for n0, n1, r0, r1 in tiles for n in range(n0, n1) for r in range(r0, r1))
    assert covered == [(n, r) for n in range(N) for r in range(R)]              # every row once
    sizes = [(n1 - n0) * (r1 - r0) for n0, n1, r0, r1 in tiles]
    assert max(sizes) * row_len * col_rows <= max(OPTIONS.tile_elems, row_len * col_rows)
    rows = [r1 - r0 for n0, n1, r0, r1 in tiles]
    assert max(rows) - min(rows) <= 1                                            # equal blocks, to a row
    work = [sum(sizes[0::2]), sum(sizes[1::2])]
    assert abs(work[0] - work[1]) <= max(sizes)


@pytest.mark.parametrize("dtype,tol", [(np.float32, 1e-6), (np.float64, 1e-14)])
def test_fast_silu_in_blocks_equals_the_reference_over_many_blocks_and_extreme_inputs(dtype, tol, rng):
    """The fast SiLU runs blocks of activation.BLOCK elements on every core: over several blocks and a
    partial last one, with inputs far out (-1000, -89, 90, 1000), it equals the reference's output and
    input gradient within rounding, warns of nothing (exp(-x) may overflow to inf: s = 0, the limit),
    keeps the dtype, and leaves x and dout as they were."""
    import warnings

    from npunet.backends.fast import activation
    shape = (3, 5, 150, 151)                                   # 340k elements: 5 full blocks and a part
    assert np.prod(shape) % activation.BLOCK and np.prod(shape) > 4 * activation.BLOCK
    x = (rng.standard_normal(shape) * 5).astype(dtype)
    x.flat[:7] = [-1000, -89, -88, 0, 88, 90, 1000]
    g = rng.standard_normal(shape).astype(dtype)
    x0, g0 = x.copy(), g.copy()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out, cache = fast.silu_forward(x)
        dx = fast.silu_backward(g, cache)
    out_r, cache_r = reference.silu_forward(x)
    dx_r = reference.silu_backward(g, cache_r)
    assert out.dtype == dx.dtype == dtype and out.shape == dx.shape == shape
    assert rel(out, out_r) <= tol and rel(dx, dx_r) <= tol
    assert np.isfinite(out).all() and np.isfinite(dx).all()
    assert (x == x0).all() and (g == g0).all()


@pytest.mark.parametrize("op,kw,shapes", [
    ("silu", {}, [(2, 3, 5, 4)]),
    ("mul", {}, [(2, 3, 5, 4), (2, 3, 1, 1)]),              # squeeze-and-excitation: the fast path
    ("mul", {}, [(2, 3, 1, 1), (2, 3, 5, 4)]),
    ("adaptive_avgpool2d", dict(output_size=1), [(2, 3, 5, 4)])])
def test_fast_pairs_written_this_round_gradcheck(op, kw, shapes, rng):
    """The fast backend's own SiLU, SE product and global average pool: central differences, float64."""
    inputs = [rng.standard_normal(s) for s in shapes]
    fwd, bwd = getattr(fast, op + "_forward"), getattr(fast, op + "_backward")
    assert fwd.__module__.startswith("npunet.backends.fast") or bwd.__module__.startswith("npunet.backends.fast")
    cache = {}

    def forward(*xs):
        out, cache["c"] = fwd(*xs, **kw)
        return out

    r = npunet.gradcheck_fn(forward, lambda g: bwd(g, cache["c"]), inputs)
    assert r.max_rel_error <= 1e-6, str(r)
