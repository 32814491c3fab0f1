# %% [markdown]
# # Lesson 1: layers from scratch
# A convolution three ways (four loops, im2col + one matrix product, the Numba kernel), its
# backward derived by hand and checked against finite differences, then the other U-Net layers:
# max-pool, transposed convolution ("up-convolution") and bilinear upsampling.
# Every op exists twice behind one signature: `npunet/backends/reference.py` (plain NumPy, the
# code this lesson steps through) and the fast backend (Numba + tiled BLAS) that layers use by
# default; `with npunet.backend("reference"):` switches.
#
# Run: `python lessons/01_layers_from_scratch.py [--fast] [--step]`, or open it as a notebook.
# Exercises: write these layers yourself in `lessons/exercises/01_conv2d.py` … `05_batchnorm.py`
# (convolution, max-pool, up-convolution, bilinear, BatchNorm) and check them with `python -m npunet check 1`.
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 2 s, `--class` 2 s, `--fast` 2 s.

# %%
import time

import numpy as np

import npunet
from npunet import functional as F, kernels as K, nn
from npunet.backends import reference as R
from npunet.lesson import Lesson, table

L = Lesson("Lesson 1: layers from scratch")
rng = np.random.default_rng(0)

# %% [markdown]
# ## Step 1: a convolution as four loops
# out[n, o, i, j] = sum over c, u, v of x[n, c, i*s + u, j*s + v] * w[o, c, u, v] + b[o]
# (PyTorch's Conv2d is this cross-correlation; weight layout (out, in, kh, kw)).

# %%
L.step("a convolution as four loops")
C, O, S = L.pick((16, 16, 48), (4, 4, 16))
x = rng.standard_normal((1, C, S, S)).astype(np.float32)
conv = nn.Conv2d(in_channels=C, out_channels=O, kernel_size=3)
t = time.perf_counter()
y_loops = F.conv2d_naive(x, weight=conv.weight.data, bias=conv.bias.data)
t_loops = time.perf_counter() - t
print("x:", x.shape, "weight:", conv.weight.shape, "-> out:", y_loops.shape, "(H_out = (H + 2p - k) // s + 1)")

# %% [markdown]
# ## Step 2: im2col + one GEMM
# Every output pixel's 3x3xC patch becomes one column of a (C*9, H_out*W_out) matrix; the
# convolution is then (O, C*9) @ (C*9, H_out*W_out): one call into BLAS.

# %%
L.step("im2col + GEMM")
Ho = S - 2
t = time.perf_counter()
cols = R.im2col(x, kh=3, kw=3, stride=(1, 1), padding=(0, 0))   # the reference backend's im2col
y_gemm = (conv.weight.data.reshape(O, -1) @ cols).reshape(1, O, Ho, Ho) + conv.bias.data[:, None, None]
t_gemm = time.perf_counter() - t
print("cols:", cols.shape, f"= ({C}*3*3, {Ho}*{Ho}),", f"{cols.nbytes / 2**20:.1f} MiB for a {x.nbytes / 2**10:.0f} KiB input")
# the same formula at the size that matters (computed, not allocated): the 2015 U-Net's second layer
print(f"U-Net 2015, 64 -> 64 channels at 570x570: cols (64*3*3, 570*570) = {64 * 9 * 570 * 570 * 4 / 1e6:.0f} MB "
      f"of float32 for an input of {64 * 572 * 572 * 4 / 1e6:.0f} MB: k*k = 9 times the input, which is why the "
      f"fast backend builds the columns in tiles of ~8 MiB (lesson 9)")
print("max |loops - gemm| =", float(np.abs(y_loops - y_gemm).max()))

# %% [markdown]
# ## Step 3: the Numba kernel behind nn.Conv2d
# npunet tiles the im2col (a few output rows at a time, so the column buffer stays in cache) and
# uses a "wide" layout for stride 1 in which every row of the column matrix is one contiguous copy.
# The kernel and its NumPy twin agree exactly:

# %%
L.step("the Numba kernel")
cols_k = np.empty_like(cols)
K.im2col(x, n0=0, n1=1, oh0=0, oh1=Ho, kh=3, kw=3, sh=1, sw=1, ph=0, pw=0, W_out=Ho, cols=cols_k)
print("numba im2col == reference im2col:", np.array_equal(cols_k, cols))
times = {}
for backend in ("reference", "fast"):
    with npunet.backend(backend):
        conv(x)
        t = time.perf_counter()
        y_fast = conv(x)
        times[backend] = time.perf_counter() - t
table([["four loops", f"{t_loops * 1e3:.1f}"], ["im2col + GEMM, by hand", f"{t_gemm * 1e3:.2f}"],
       ["nn.Conv2d, reference backend", f"{times['reference'] * 1e3:.2f}"],
       ["nn.Conv2d, fast backend (Numba + BLAS)", f"{times['fast'] * 1e3:.2f}"]], ["forward", "ms"])
print("max |loops - Conv2d| =", float(np.abs(y_loops - y_fast).max()))

# %% [markdown]
# ## Step 4: the backward, by hand
# With dout = dL/dout reshaped to (O, H_out*W_out):
# - dW = dout @ cols^T (every weight saw every column),
# - db = dout summed over N, H, W,
# - dcols = W^T @ dout, and col2im scatters dcols back: each input pixel collects the gradient of
#   every patch it was copied into (they overlap, so the scatter *adds*).
# The check: central differences of a random vector-Jacobian product, in float64.

# %%
L.step("the backward, written out and checked against finite differences")
x64, conv64 = x.astype(np.float64), nn.Conv2d(in_channels=C, out_channels=O, kernel_size=3).to(np.float64)
y64 = conv64(x64)
dout = rng.standard_normal(y64.shape)                           # (1, O, Ho, Wo): dL/dout from above
d = dout.transpose(1, 0, 2, 3).reshape(O, -1)                   # (O, N*Ho*Wo)
cols64 = R.im2col(x64, kh=3, kw=3, stride=(1, 1), padding=(0, 0))  # (C*9, N*Ho*Wo)
dW = (d @ cols64.T).reshape(conv64.weight.shape)                # (O, C*9) -> (O, C, 3, 3)
db = dout.sum(axis=(0, 2, 3))                                   # (O,)
dcols = conv64.weight.data.reshape(O, -1).T @ d                 # (C*9, N*Ho*Wo)
dx = R.col2im(dcols, x64.shape, kh=3, kw=3, stride=(1, 1), padding=(0, 0))  # (1, C, S, S)
dx_layer = conv64.backward(dout)
print("by hand vs nn.Conv2d.backward: dx", float(np.abs(dx - dx_layer).max()),
      "dW", float(np.abs(dW - conv64.weight.grad).max()), "db", float(np.abs(db - conv64.bias.grad).max()))
small = nn.Conv2d(in_channels=3, out_channels=4, kernel_size=(3, 2), stride=2, padding=1).to(np.float64)
for backend in ("reference", "fast"):
    with npunet.backend(backend):
        print(f"{backend} backend:", npunet.gradcheck(small, rng.standard_normal((2, 3, 7, 6))))

# %% [markdown]
# ## Step 5: max-pool, up-convolution, bilinear upsampling
# Max-pool remembers where each maximum was and routes the gradient there; the 2x2 stride-2
# transposed convolution (the paper's "up-convolution") is a convolution's input-gradient; bilinear
# upsampling is two matrix products, out = My @ x @ Mx^T, so its backward is My^T @ dout @ Mx.
# Read them in npunet/backends/reference.py: `maxpool2d_backward`, `conv_transpose2d_forward`,
# `interpolate_backward`.

# %%
L.step("max-pool, up-convolution and bilinear upsampling with their gradients")
xp = (rng.permutation(2 * 3 * 8 * 8) * 0.01).reshape(2, 3, 8, 8)  # distinct values: no ties
rows = []
for name, layer, inp in [("MaxPool2d(kernel_size=2)", nn.MaxPool2d(kernel_size=2), xp),
                         ("ConvTranspose2d(3 -> 2, kernel 2, stride 2)",
                          nn.ConvTranspose2d(in_channels=3, out_channels=2, kernel_size=2, stride=2).to(np.float64), xp),
                         ("Upsample(x2, bilinear)", nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), xp)]:
    out = layer(inp)
    err = npunet.gradcheck(layer, inp).max_rel_error
    rows.append([name, inp.shape, out.shape, f"{err:.1e}", "ok" if err <= 1e-6 else "FAIL"])
table(rows, ["layer", "in", "out", "gradcheck", "<= 1e-6"])
assert all(r[-1] == "ok" for r in rows), "a backward disagrees with finite differences"

# %% [markdown]
# ## Step 6: those backwards by hand
# The same three backwards written out, a few lines each, and compared with the layers':
# - max-pool 2x2: view x as (N, C, H/2, W/2, 4) windows; dout goes to each window's argmax.
# - up-convolution 2x2, stride 2 (no overlap): y[n, o, 2i+a, 2j+b] = sum_c x[n, c, i, j] w[c, o, a, b] + b[o],
#   so dx[n, c, i, j] = sum_{o,a,b} dy[n, o, 2i+a, 2j+b] w[c, o, a, b] and dw[c, o, a, b] = sum_{n,i,j} x dy.
# - bilinear x2: out = A x A^T per channel, with A (2H, H) holding the interpolation weights (output
#   row r reads input rows floor(s) and floor(s)+1, s = (r + 0.5) / 2 - 0.5 clamped at 0), so dx = A^T dy A.

# %%
L.step("those backwards by hand")
N_, C_, H_ = xp.shape[0], xp.shape[1], xp.shape[2]
g_pool = rng.standard_normal((N_, C_, H_ // 2, H_ // 2))
win = xp.reshape(N_, C_, H_ // 2, 2, H_ // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(N_, C_, H_ // 2, H_ // 2, 4)
dwin = np.zeros_like(win)                                              # (N, C, H/2, W/2, 4)
np.put_along_axis(dwin, win.argmax(axis=-1)[..., None], g_pool[..., None], axis=-1)
dx_pool = dwin.reshape(N_, C_, H_ // 2, H_ // 2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(xp.shape)
pool = nn.MaxPool2d(kernel_size=2)
pool(xp)
print("max-pool     dx by hand vs layer:", float(np.abs(dx_pool - pool.backward(g_pool)).max()))

up = nn.ConvTranspose2d(in_channels=C_, out_channels=2, kernel_size=2, stride=2).to(np.float64)
g_up = rng.standard_normal((N_, 2, 2 * H_, 2 * H_))
dy6 = g_up.reshape(N_, 2, H_, 2, H_, 2)                                # [n, o, i, a, j, b]
dx_up = np.einsum("noiajb,coab->ncij", dy6, up.weight.data)            # (N, C, H, W)
dw_up = np.einsum("ncij,noiajb->coab", xp, dy6)                        # (C, O, 2, 2)
up(xp)
up.zero_grad()
dx_layer = up.backward(g_up)
print("up-conv      dx, dW by hand vs layer:", float(np.abs(dx_up - dx_layer).max()),
      float(np.abs(dw_up - up.weight.grad).max()))

A = np.zeros((2 * H_, H_))                                             # interpolation weights
for r in range(2 * H_):
    src = max((r + 0.5) / 2 - 0.5, 0.0)
    i0 = int(np.floor(src))
    lam = src - i0
    A[r, i0] += 1 - lam
    A[r, min(i0 + 1, H_ - 1)] += lam
bil = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False)
print("bilinear     forward A x A^T vs layer:", float(np.abs(A @ xp @ A.T - bil(xp)).max()))
g_bil = rng.standard_normal((N_, C_, 2 * H_, 2 * H_))
print("bilinear     dx = A^T dy A by hand vs layer:", float(np.abs(A.T @ g_bil @ A - bil.backward(g_bil)).max()))

# %% [markdown]
# ## Step 7: BatchNorm and ReLU, backward by hand
# Training-mode BatchNorm normalises each channel with its batch mean and variance over (N, H, W):
# xhat = (x - mean) / sqrt(var + eps), y = gamma * xhat + beta. Since mean and var depend on every x,
# dx is not just dy * gamma / std: with M values per channel and dxhat = dy * gamma,
# dx = (M * dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)) / (M * std), and dgamma = sum(dy * xhat),
# dbeta = sum(dy). ReLU passes the gradient where its input was positive, nowhere else.

# %%
L.step("BatchNorm (training) and ReLU backwards by hand")
xb = rng.standard_normal((4, 3, 5, 5)) * 2 + 1
bn = nn.BatchNorm2d(num_features=3).to(np.float64)
bn.weight.data[:] = [1.5, -0.5, 2.0]
relu = nn.ReLU()
yb = relu(bn(xb))
gb = rng.standard_normal(yb.shape)
axes, M = (0, 2, 3), xb.shape[0] * xb.shape[2] * xb.shape[3]          # per channel: M values
mean, var = xb.mean(axis=axes, keepdims=True), xb.var(axis=axes, keepdims=True)
xhat = (xb - mean) / np.sqrt(var + bn.eps)                             # (N, C, H, W)
dy = gb * (bn.weight.data[None, :, None, None] * xhat + bn.bias.data[None, :, None, None] > 0)  # ReLU
dxhat = dy * bn.weight.data[None, :, None, None]
dx_bn = (M * dxhat - dxhat.sum(axis=axes, keepdims=True)
         - xhat * (dxhat * xhat).sum(axis=axes, keepdims=True)) / (M * np.sqrt(var + bn.eps))
bn.zero_grad()
dx_layers = bn.backward(relu.backward(gb))
print("dx by hand vs BatchNorm2d + ReLU:", float(np.abs(dx_bn - dx_layers).max()))
print("dgamma, dbeta by hand vs the layer:", float(np.abs((dy * xhat).sum(axis=axes) - bn.weight.grad).max()),
      float(np.abs(dy.sum(axis=axes) - bn.bias.grad).max()))
print("and against central differences:", npunet.gradcheck(bn, xb))

# %%
L.finish()
