"""A frozen layer's backward on the fast backend: every convolution strategy returns the same input
gradient as the full backward (bit for bit) and no weight or bias gradient (its GEMMs are skipped)."""
import numpy as np
import pytest

from npunet.backends import fast

CONVS = {  # name: (x shape, weight shape, stride, padding, groups), chosen so that `strategy` runs
    "winograd": ((2, 8, 32, 32), (8, 8, 3, 3), 1, 1, 1),
    "depthwise": ((2, 6, 12, 12), (6, 1, 3, 3), 1, 1, 6),
    "pointwise": ((2, 5, 9, 9), (7, 5, 1, 1), 1, 0, 1),
    "small_map": ((1, 4, 6, 6), (5, 4, 3, 3), 1, 0, 1),
    "im2col_tiles": ((2, 3, 80, 80), (4, 3, 3, 3), 2, 1, 1),
}
TRANSPOSED = {"upconv_disjoint": ((2, 6, 8, 8), (6, 4, 2, 2), 2, 0), "transposed_tiles": ((2, 4, 7, 7), (4, 3, 3, 3), 2, 1)}


@pytest.mark.parametrize("name", list(CONVS))
def test_frozen_conv_strategy_gives_dx_and_no_weight_grad(name, rng):
    xs, ws, s, p, g = CONVS[name]
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[0]).astype(np.float32)
    out, cache = fast.conv2d_forward(x, w, b, s, p, g)
    assert type(cache).__module__.endswith(name), f"expected the {name} strategy, got {type(cache).__name__}"
    d = rng.standard_normal(out.shape).astype(np.float32)
    dx_full, dw, db = fast.conv2d_backward(d, cache)
    out, cache = fast.conv2d_forward(x, w, b, s, p, g)
    dx_frozen, dw0, db0 = fast.conv2d_backward(d, cache, weight_grad=False)
    assert dw is not None and db is not None
    assert dw0 is None and db0 is None
    np.testing.assert_array_equal(dx_frozen, dx_full)


@pytest.mark.parametrize("name", list(TRANSPOSED))
def test_frozen_transposed_strategy_gives_dx_and_no_weight_grad(name, rng):
    xs, ws, s, p = TRANSPOSED[name]
    x, w = rng.standard_normal(xs).astype(np.float32), rng.standard_normal(ws).astype(np.float32)
    b = rng.standard_normal(ws[1]).astype(np.float32)
    out, cache = fast.conv_transpose2d_forward(x, w, b, s, p)
    assert type(cache).__module__.endswith(name), f"expected the {name} strategy, got {type(cache).__name__}"
    d = rng.standard_normal(out.shape).astype(np.float32)
    dx_full, dw, _ = fast.conv_transpose2d_backward(d, cache)
    out, cache = fast.conv_transpose2d_forward(x, w, b, s, p)
    dx_frozen, dw0, db0 = fast.conv_transpose2d_backward(d, cache, weight_grad=False)
    assert dw is not None and dw0 is None and db0 is None
    np.testing.assert_array_equal(dx_frozen, dx_full)
