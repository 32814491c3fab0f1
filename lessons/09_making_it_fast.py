# %% [markdown]
# # Lesson 9: making it fast
# The same convolution, five ways: textbook loops, im2col + one matrix product (the reference
# backend), the same in tiles (why a 750 MB column buffer is slow), Winograd's minimal filtering
# algorithm (Lavin & Gray, CVPR 2016), direct loops where there are few channels, and fewer passes
# over memory (BatchNorm fused with ReLU, BLAS kept from spinning). Every time below is measured on *your* machine as the lesson runs.
#
# Run: `python lessons/09_making_it_fast.py [--fast] [--step]`, or open it as a notebook.
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 14 s, `--class` 12 s, `--fast` 2 s.

# %%
import time

import matplotlib.pyplot as plt
import numpy as np

import npunet
from npunet import functional as F
from npunet import nn
from npunet.backends import fast, reference
from npunet.kernels import winograd as W
from npunet.lesson import Lesson, table

L = Lesson("Lesson 9: making it fast")
rng = np.random.default_rng(0)


def best(f, repeat=3):
    """Best wall time of f() over a few runs (the first run also compiles Numba kernels: not counted)."""
    f()
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    return min(times)


# %% [markdown]
# ## Step 1: the textbook loops
# A convolution layer computes, for every image n, output channel o and pixel (i, j),
# `out[n, o, i, j] = b[o] + sum over c, u, v of x[n, c, i+u, j+v] * w[o, c, u, v]`:
# N·O·H_out·W_out·C·k² multiply-adds. `npunet.functional.conv2d_naive` is exactly these loops
# (one patch-times-filter sum per output pixel). Correct, and slow.

# %%
L.step("the naive loops against the reference (im2col) convolution")
C = O = L.pick(16, 4)
S = L.pick(64, 16)
x = rng.standard_normal((1, C, S, S)).astype(np.float32)
w = (rng.standard_normal((O, C, 3, 3)) * np.sqrt(2 / (C * 9))).astype(np.float32)
b = np.zeros(O, np.float32)
flops = 2 * O * C * 9 * (S - 2) ** 2
t_naive = best(lambda: F.conv2d_naive(x, w, bias=b), repeat=1)
with npunet.backend("reference"):
    t_ref = best(lambda: F.conv2d_forward(x, w, bias=b))
y_naive = F.conv2d_naive(x, w, bias=b)
with npunet.backend("reference"):
    y_ref, _ = F.conv2d_forward(x, w, bias=b)
print(f"layer {C} -> {O} channels, 3x3, on {S}x{S}: {flops / 1e6:.1f} MFLOP")
print(f"max |naive - im2col| = {np.abs(y_naive - y_ref).max():.1e}")
table([["naive loops", f"{t_naive * 1e3:.1f}", f"{flops / t_naive / 1e9:.2f}"],
       ["im2col + GEMM (reference)", f"{t_ref * 1e3:.2f}", f"{flops / t_ref / 1e9:.1f}"]],
      ["convolution", "ms", "GFLOP/s"])

# %% [markdown]
# ## Step 2: im2col, and why one giant column buffer is slow
# im2col copies every k x k input patch into a column: `cols` has C·k² rows and N·H_out·W_out
# columns, and the convolution becomes one matrix product `W (O, C·k²) @ cols`. A matrix product
# is the one thing every machine does at close to its peak. The price is memory: cols is k² = 9
# times the input. For the 2015 U-Net's second layer (64 channels, 570x570 output) that is
# 576 x 324,900 floats = 749 MB, written once and read once, plus the page faults of a fresh
# allocation. The fast backend builds cols in tiles of output rows (about 8 MiB, which stays in
# cache) and reuses the buffer.

# %%
L.step("the column buffer: one piece against tiles")
C = O = L.pick(64, 16)
S = L.pick(258, 66)
x = rng.standard_normal((1, C, S, S)).astype(np.float32)
w = (rng.standard_normal((O, C, 3, 3)) * np.sqrt(2 / (C * 9))).astype(np.float32)
cols_mb = C * 9 * (S - 2) ** 2 * 4 / 2**20
print(f"{C} -> {O} channels on {S}x{S}: the whole column buffer is {cols_mb:.0f} MiB "
      f"(the 572 U-Net's 64-channel layer: {576 * 570 * 570 * 4 / 1e6:.0f} MB)")
with npunet.backend("reference"):
    t_whole = best(lambda: F.conv2d_forward(x, w, bias=None))
with npunet.fast_options(winograd=False):    # the fast backend's im2col path alone
    t_tiled = best(lambda: fast.conv2d_forward(x, w, bias=None))
n = 64 * 2**20 // 4
t_fresh = best(lambda: np.empty(n, np.float32).fill(1))
buf = np.empty(n, np.float32)
t_reused = best(lambda: buf.fill(1))
table([["one buffer (reference)", f"{t_whole * 1e3:.1f}"], ["tiles of ~8 MiB (fast)", f"{t_tiled * 1e3:.1f}"],
       ["  (write 64 MiB, fresh array)", f"{t_fresh * 1e3:.1f}"], ["  (write 64 MiB, reused array)", f"{t_reused * 1e3:.1f}"]],
      ["forward", "ms"])

# %% [markdown]
# ## Step 3: Winograd's minimal filtering, derived in a few lines
# Two outputs of a 3-tap filter, `y0 = d0 g0 + d1 g1 + d2 g2` and `y1 = d1 g0 + d2 g1 + d3 g2`,
# take 6 multiplications. Winograd's F(2, 3) needs 4:
#
#     m1 = (d0 - d2) g0          m2 = (d1 + d2) (g0 + g1 + g2) / 2
#     m4 = (d1 - d3) g2          m3 = (d2 - d1) (g0 - g1 + g2) / 2
#     y0 = m1 + m2 + m3          y1 = m2 - m3 - m4
#
# In matrices: `y = A^T [(G g) * (B^T d)]`. The filter part G g is computed once per layer, so per
# pair of outputs only the 4 products remain. Nested in 2-D, F(2x2, 3x3) makes a 2x2 output tile
# from a 4x4 input tile with 16 products instead of 36 (2.25x fewer); F(4x4, 3x3), on 6x6 tiles,
# 36 instead of 144 (4x). Across channels the products become one matrix product per tile
# position: the multiply-adds go to BLAS again, on 16 (or 36) smaller GEMMs.

# %%
L.step("check F(2, 3) and F(4, 3), then count")
d, g = rng.standard_normal(4), rng.standard_normal(3)
m1, m4 = (d[0] - d[2]) * g[0], (d[1] - d[3]) * g[2]
m2, m3 = (d[1] + d[2]) * (g[0] + g[1] + g[2]) / 2, (d[2] - d[1]) * (g[0] - g[1] + g[2]) / 2
direct = [d[0] * g[0] + d[1] * g[1] + d[2] * g[2], d[1] * g[0] + d[2] * g[1] + d[3] * g[2]]
print("by hand  :", np.round([m1 + m2 + m3, m2 - m3 - m4], 12), " direct:", np.round(direct, 12))
print("matrices :", np.round(W.AT @ ((W.G @ g) * (W.BT @ d)), 12))
d6 = rng.standard_normal(6)
print("F(4, 3)  :", np.round(W.AT4 @ ((W.G4 @ g) * (W.BT4 @ d6)), 12), " direct:",
      np.round([d6[i:i + 3] @ g for i in range(4)], 12))
table([["direct 3x3", "9", "1", "9x the input (im2col)"],
       ["F(2x2, 3x3)", "16 / 4 = 4", "2.25", "4x (16 values per 2x2 tile)"],
       ["F(4x4, 3x3)", "36 / 16 = 2.25", "4", "2.25x (36 values per 4x4 tile)"]],
      ["algorithm", "products per output", "fewer by", "transformed input"])

# %% [markdown]
# ## Step 4: the whole convolution, its error and its time
# The backward pass needs no new idea: forward is three linear maps (transform the tiles, multiply,
# transform back), so the gradient applies their transposes in reverse order, and it is exactly the
# gradient of the Winograd forward (npunet's tests check it against finite differences). What it
# costs is float32 rounding: the transforms add and subtract values several times their size.
# In float64 the error is at the 1e-15 level, so every gradient check stays exact; the fast backend
# uses Winograd for float32 only.

# %%
L.step("Winograd against the direct convolution: error and speed")
C = O = L.pick(64, 16)
S = L.pick(130, 34)
N = L.pick(4, 2)
x64 = np.maximum(rng.standard_normal((N, C, S, S)), 0)
w64 = rng.standard_normal((O, C, 3, 3)) * np.sqrt(2 / (C * 9))
y64, _ = reference.conv2d_forward(x64, w64, bias=None, stride=1, padding=1)
x32, w32 = x64.astype(np.float32), w64.astype(np.float32)
rows = []
for name, m in [("im2col + GEMM", None), ("Winograd F(2x2, 3x3)", 2), ("Winograd F(4x4, 3x3)", 4)]:
    # winograd=False: the im2col path; winograd_tile=m: F(m x m, 3x3) for this float32 layer
    knobs = dict(winograd=False) if m is None else dict(winograd_tile=m)
    run = lambda: fast.conv2d_forward(x32, w32, bias=None, stride=1, padding=1)     # noqa: E731
    with npunet.fast_options(**knobs):
        y32 = run()[0]
        err = np.abs(y32 - y64).max() / np.abs(y64).max()
        t = best(run)
    rows.append([name, f"{t * 1e3:.1f}", f"{err:.1e}"])
yw64 = fast.winograd.forward(x64, w64, bias=None, padding=(1, 1), m=4)[0]   # float64: called directly
print(f"float64, F(4x4, 3x3) vs direct: {np.abs(yw64 - y64).max() / np.abs(y64).max():.1e}")
table(rows, [f"{N}x{C}->{O} @{S}^2, float32", "ms", "max error / max |y| vs float64"])

# %% [markdown]
# ## Step 4b: few channels: no transform at all
# Winograd saves multiplications, but it moves data: the transformed tiles are 2.25-4x the input, written
# and read back. A classroom U-Net's first and last layers have 1-32 channels at full resolution, where
# a product costs less than moving its operands, so these layers are memory-bound. The fast backend runs
# them as *direct* loops (`npunet/kernels/direct.py`): read the zero-padded input plane flat (the *wide
# grid*: output k = row * (W + 2) + column reads element k + i * (W + 2) + j for tap (i, j)), and let the
# compiler vectorise one loop along whole rows, four output channels at a time sharing each load. The
# backward is the same loop with the kernel flipped (for dx) and nine dot products (for dW). The rule
# (`fast/conv.py`): float32, 3x3, stride 1, padding 1, C_in x C_out <= 512; `fast_options(direct=False)`
# turns it off. Measured on a shared 2-core machine (CPU time, batch 8 at 128^2, forward / backward):
# 16 -> 16 channels 1.6x / 1.1x faster than Winograd, 1 -> 16 2.7x / 2x faster than im2col; the classroom
# training step 5-10 % less CPU time.

# %%
L.step("direct loops vs Winograd vs im2col for a few channels")
C = O = 16
S = L.pick(128, 32)
xd = np.maximum(rng.standard_normal((8, C, S, S)), 0).astype(np.float32)
wd = (rng.standard_normal((O, C, 3, 3)) * np.sqrt(2 / (C * 9))).astype(np.float32)
yd64, _ = reference.conv2d_forward(xd.astype(np.float64), wd.astype(np.float64), bias=None, stride=1, padding=1)
gd = np.ones_like(yd64, dtype=np.float32)
rows = []
for name, knobs in [("im2col + GEMM", dict(direct=False, winograd=False)), ("Winograd", dict(direct=False)),
                    ("direct loops", {})]:
    with npunet.fast_options(**knobs):
        run = lambda: fast.conv2d_forward(xd, wd, bias=None, stride=1, padding=1)     # noqa: E731
        y32, cache = run()
        err = np.abs(y32 - yd64).max() / np.abs(yd64).max()
        t_f = best(run)
        t_b = best(lambda: fast.conv2d_backward(gd, cache))             # dx, dW from the same cache
    rows.append([name, type(cache).__name__, f"{t_f * 1e3:.1f}", f"{t_b * 1e3:.1f}", f"{err:.1e}"])
table(rows, [f"8x{C}->{O} @{S}^2, float32", "strategy", "forward ms", "backward ms", "max error / max |y|"])

# %% [markdown]
# ## Step 5: fewer passes over memory
# Past the convolutions, a U-Net step is mostly memory traffic: BatchNorm reads its input twice and
# writes once, ReLU reads and writes again. Fusing BN and ReLU saves one full pass forward and one
# backward: `nn.Sequential` runs a BatchNorm2d followed by a ReLU as the backend's pair
# `batchnorm2d_relu` (the U-Net family's conv-BN-ReLU blocks are Sequentials; same weights, same
# results). And threads: BLAS (OpenBLAS) keeps its worker threads spinning for a while after each
# multi-threaded GEMM, and they take the cores from the next kernel. The fast backend runs its own
# threads and keeps BLAS on one thread for a whole training step (`npunet.backends.step_threads()`).

# %%
L.step("BN + ReLU fused, and a whole training step three ways")
xb = rng.standard_normal((8, 32, L.pick(128, 32), L.pick(128, 32))).astype(np.float32)
bn, relu = nn.BatchNorm2d(32), nn.ReLU()
t_two = best(lambda: relu(bn(xb)))
fused = nn.Sequential(bn, relu)                 # BN then ReLU: the backend's fused pair
t_one = best(lambda: fused(xb))
print(f"relu(bn(x)) {t_two * 1e3:.1f} ms, fused {t_one * 1e3:.1f} ms, same result: "
      f"{np.array_equal(relu(bn(xb)), fused(xb))}")

net = npunet.models.UNet(1, 2, base_channels=16, depth=L.pick(4, 2), padding="same", batch_norm=True)
xs = rng.standard_normal((8, 1, L.pick(128, 32), L.pick(128, 32))).astype(np.float32)


def train_step():
    y = net(xs)
    net.zero_grad()
    net.backward(np.ones_like(y) / y.size)


steps = {}
with npunet.backend("reference"):
    steps["reference backend"] = best(train_step, repeat=1)
with npunet.fast_options(winograd=False, direct=False):
    steps["fast: im2col tiles"] = best(train_step)
with npunet.fast_options(direct=False):
    steps["fast: + Winograd"] = best(train_step)
    with npunet.backends.step_threads():
        steps["fast: + one BLAS thread per step"] = best(train_step)
with npunet.backends.step_threads():
    steps["fast: + direct loops for few channels"] = best(train_step)
table([[k, f"{v:.3f}", f"{steps['reference backend'] / v:.1f}x"] for k, v in steps.items()],
      ["classroom U-Net step (8 images)", "s", "speed-up"])

fig, ax = plt.subplots(figsize=(7, 3))
ax.barh(list(steps)[::-1], list(steps.values())[::-1], color="tab:blue")
ax.set_xlabel("seconds per training step (forward + backward), this machine")
ax.set_title("Making it fast: the same U-Net step")
fig.tight_layout()
fig.savefig(L.fig("making_it_fast.png"), dpi=100)
L.done(fig)
print("PyTorch comparison (when torch is importable): npunet bench --model classroom --rounds 3")

# %% [markdown]
# ## Step 6: the first second: compiling once
# Numba compiles each kernel the first time it runs, for this machine's CPU, and caches the machine code
# on disk. On a fresh machine that first compile is what a student waits for, so it is engineered too:
# - **no code that is slow to compile**: an array slice assignment (`a[i, p:q] = b[j, p:q]`) or a `reshape`
#   inside a kernel pulls in Numba's broadcasting checks and their error-message formatting, about 3 s of
#   compilation the first time any kernel uses them; npunet's kernels copy element by element instead
#   (the same arithmetic, and LLVM vectorises the loop anyway);
# - **no `parallel=True`**: every kernel is a serial loop that releases the GIL, run over channel ranges on
#   every core by `npunet.kernels.util.split` (a `parallel=True` kernel compiles 2-3x slower);
# - **a cache that outlives the install**: it lives in `~/.cache/npunet/numba` (or `$NUMBA_CACHE_DIR`), keyed
#   by a hash of each kernel file's contents, so a read-only install works, reinstalling the same version
#   keeps it, and `npunet warmup` fills it before class;
# - **one compilation per kernel and dtype**: a bare constant passed from one kernel to another
#   (`_store_rows(acc, 2, ...)`) is typed as its value, so each value compiled its own copy of the callee;
#   the callers pass `np.int64(2)`, and a test counts the compilations;
# - **short loop bodies**: Numba types and lowers every line it is given, so six written-out copies of a
#   1-D transform cost six times one. Four of the F(4x4, 3x3) Winograd transforms now run their 1-D
#   transform in a loop over a 6-element scratch row: the same arithmetic (bit for bit the same output),
#   the same speed, about half the compile time. The same change made the F(2x2, 3x3) transforms 2x slower
#   (their written-out code keeps values in registers), so there it was not made.
# Measured (2-core machine, CPU seconds of `import npunet` + the first classroom training step on an empty
# cache): 25.4 s before the first change, 18.4 s after (its Numba compilation 23.3 s -> 16.5 s); with
# the cache warm, 1.7 s. The last two changes, median of 3 alternating runs on a busy machine: 19.6 s ->
# 15.6 s (compilation 17.3 s -> 13.6 s; the demo's compilation 14.2 s -> 12.3 s). What remains is spread
# over about 30 kernels of 0.2-1.6 s each (about half of it the Winograd transforms) and Numba's own start.

# %%
L.step("where the compiled kernels live")
from pathlib import Path  # noqa: E402

from npunet import jitcache  # noqa: E402

root = jitcache.cache_root()
cached = sorted({p.name.split("-")[0] for p in Path(root).rglob("*.nbi")}) if root else []
print(f"compiled kernels cached in {root}: {len(cached)} kernels, e.g. {', '.join(cached[:4])}")

# %% [markdown]
# ## Step 6b: the second core compiles too
# Numba compiles in the calling thread, one kernel after another, so a cold start leaves the other core
# idle. On the first real compilation npunet starts one helper process (`python -m npunet.app.prefetch`)
# with a *plan*: the kernels a classroom training step needs, each with its exact argument types, in the
# order the step first calls them (recorded from a real run on an empty cache). The helper walks the
# plan **backwards**, backward-pass kernels first, while the run compiles its forward pass; both write
# into the same disk cache, and when the run reaches a kernel the helper has finished, Numba loads it in
# milliseconds. Two processes saving one kernel's cache entry take a file lock, so neither loses the
# other's entry. `npunet demo` starts the helper before it builds its data, with the demo's plan.
#
# Measured (2-core machine, whole processes, alternating, `npunet bench --cold`): `import npunet` + the
# first classroom training step on an empty cache 11.9 s -> 7.5 s median (14.4 s -> 10.2 s in a slower
# hour of the same machine); the demo on an empty cache 53.3 s -> 49.9 s median (its compilation ends
# about 5 s earlier). Each compile is slower while both run (the two cores share more than their caches),
# so the saving is less than half. `NPUNET_PREFETCH=0` turns the helper off.

# %%
L.step("the helper's plan: the kernels it compiles, backward pass first")
from npunet.app import prefetch  # noqa: E402

plan = prefetch.PLANS["classroom"]
print(f"{len(plan)} kernels for a classroom step; the helper starts from the end:")
for module, kernel, _ in reversed(plan[-6:]):
    print(f"  {module}.{kernel}")

# %% [markdown]
# ## Step 7: both cores busy, and no fresh pages
# With the kernels fast, a profile of whole steps (time per op, and CPU time over wall time: 2.0 when
# both cores work) found time lost *between* and *around* them:
# - **Work split unevenly.** `split` gives each core a contiguous range of work units, and the im2col
#   pipelines take tiles in turns. A batch of 8 images made Winograd bands of 7 + 1 images (one core did
#   nearly everything: CPU/wall 1.03 on the 16^2-32^2 layers), and a 256^2 image cut into row tiles of 111 +
#   17 rows gave one pipeline every large tile (ResNet's 7x7 stem ran on one core). Now each core takes
#   N / cores whole images and bands them itself (as the backward already did), and the row tiles are
#   equal blocks (to a row): the stem's backward 48 -> 37 ms.
# - **Fresh pages every step.** A training step frees its large arrays at the end and allocates them again
#   in the next. glibc hands arrays over 32 MiB straight back to the system, and trims the heap's free
#   top, so every step touched new pages, each zeroed by the kernel in a page fault (a ResNet-34 U-Net
#   step at 4x256^2: ~3,600 faults, 0.2 s of system time). `import npunet` asks glibc to keep freed memory
#   (`npunet/allocator.py`; `NPUNET_MALLOC=system` leaves glibc alone, `npunet.allocator.release()` hands the
#   memory back): whole steps 0.75x the time for that U-Net, 0.86x for the 572 U-Net, the classroom step
#   unchanged. The price: the process keeps its high-water memory.
# - **Small things that were not small.** Dividing by 6, 12 and 24 in the F(4x4) weight transform (a
#   division costs ~10 multiplications) made it half of a 128-channel layer's forward: multiplying by the
#   reciprocals, 3x faster. The conv bias gradient summed in float64 across strided planes: each plane
#   summed along memory first, 3-4x faster (7 % of a classroom step). EfficientNet's SiLU made eight
#   whole-array NumPy passes on one core (20 % of an Eff-UNet step): in cache-sized blocks on both cores, 7x.
# - **Winograd is not always the answer.** With 16 output channels and 256 input channels (UNet 3+'s
#   full-scale skips), Winograd's transforms of the wide input side cost more than the products they save;
#   the direct loops now take every float32 3x3 stride-1 padding-1 conv with at most 16 outputs
#   (`fast_options(direct_max_out=16)`):
#   that layer's backward 127 -> 99 ms, the UNet 3+ step 0.91x.

# %%
L.step("equal shares for two cores, and memory reused")
from npunet import allocator  # noqa: E402
from npunet.backends.fast.tiling import RowTiles  # noqa: E402
from npunet.backends.fast.winograd import bands  # noqa: E402

budget = 7 * 36 * 64 * 64                         # 7 images' transformed tiles fit one band
print("one list of bands, split between the cores:", [(n0, n1) for n0, n1, _, _ in bands(8, 8, 8, 64, 36, budget)])
print("now each core takes 4 of the 8 images and bands its own:",
      [[(n0, n1) for n0, n1, _, _ in bands(4, 8, 8, 64, 36, budget, first=i0)] for i0 in (0, 4)])
print("row tiles of ResNet's stem (4 images, 128 output rows):",
      sorted({r1 - r0 for _, _, r0, r1 in RowTiles(4, 128, 128, 147)}), "rows each")


def faults():
    """Page faults of this process so far (None where the OS does not count them for us)."""
    try:
        import resource
    except ImportError:  # Windows
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


big = np.ones(L.pick(64, 16) * 2 ** 20 // 8)     # allocated, touched, freed: as a step's activations
del big
f0 = faults()
big = np.ones(L.pick(64, 16) * 2 ** 20 // 8)
print(f"allocator: {allocator.state}; the same array again took "
      f"{faults() - f0 if f0 is not None else 'an uncounted number of'} page faults")
del big

# %% [markdown]
# ## Step 8: depthwise convolutions, and small maps without junk
# Round 3's profile of the encoder U-Nets (4 x 3 x 256^2, against PyTorch's own layers) found two
# kinds of layer slower than they need be:
# - **Depthwise convolutions** (MobileNetV2, EfficientNet: one k x k filter per channel). The first
#   kernel made one pass per tap over the 4-D indices of a whole padded copy of the input: 3 GMAC/s,
#   10x slower than PyTorch on 16^2 maps. Now each (image, channel) plane is padded into a scratch plane
#   that stays in the core's cache; a 3x3 filter makes each output row in one loop of nine products
#   with the stride written as a constant, so the loop vectorises (5x5: five per pass); at stride 1 the
#   input gradient is the forward loop again, on dout with the filter turned 180 degrees; at stride 2 it
#   is built in a plane whose even and odd columns are kept apart, so each tap is a contiguous run; the
#   weight gradient sums each tap's row products in float64. Per layer 2-5x faster (4 x 144 x 64^2:
#   forward 8.2 -> 1.5 ms, backward 13 -> 4.8 ms); a whole MobileNetV2 U-Net step 0.89x its time.
# - **Small maps** (ResNet's 512 channels at 8 x 8) run one im2col GEMM for the whole map. Its columns
#   were on the wide grid (each row W + 2 long, the two junk columns cropped after): at 8 x 8 that is
#   10 columns computed for every 8 kept, 25 % more products. They are exact now, and im2col / col2im
#   are split over input channels on both cores: 4 x 512 x 8^2 forward 10.0 -> 8.6 ms, backward
#   19.8 -> 15.5 ms.

# %%
L.step("a depthwise convolution: the textbook twin against the kernel")
from npunet import kernels as K  # noqa: E402
from npunet.backends.fast.tiling import ConvGeometry  # noqa: E402

N_dw, C_dw, S_dw = L.pick(4, 1), L.pick(144, 16), L.pick(64, 32)
xd = rng.standard_normal((N_dw, C_dw, S_dw, S_dw)).astype(np.float32)
wd = rng.standard_normal((C_dw, 3, 3)).astype(np.float32)
out_dw = np.empty_like(xd)
t_twin = best(lambda: K.depthwise_fwd_ref(xd, wd, 1, 1, 1, 1, (S_dw, S_dw)))
t_kernel = best(lambda: K.depthwise_fwd(xd, wd, 1, 1, 1, 1, out_dw))
print(f"{N_dw} x {C_dw} x {S_dw}^2, 3x3: twin (pad, then a slice per tap) {t_twin * 1e3:.2f} ms, "
      f"kernel {t_kernel * 1e3:.2f} ms; largest difference "
      f"{np.abs(out_dw - K.depthwise_fwd_ref(xd, wd, 1, 1, 1, 1, (S_dw, S_dw))).max():.1e}")
g_dw = rng.standard_normal(out_dw.shape).astype(np.float32)
dx_dw, dw_dw = np.empty_like(xd), np.zeros(wd.shape)
K.depthwise_bwd(g_dw, xd, wd, 1, 1, 1, 1, dx_dw, dw_dw)     # dx: the forward loop, filter turned 180 degrees
dx_twin, dw_twin = K.depthwise_bwd_ref(g_dw, xd, wd, 1, 1, 1, 1)   # the twin scatters every tap instead
print(f"backward against the twin: dx differs by at most {np.abs(dx_dw - dx_twin).max():.1e}, "
      f"dw by {np.abs(dw_dw - dw_twin).max() / np.abs(dw_twin).max():.1e} (relative)")
for side in (8, 16, 32):
    wide, exact = (ConvGeometry((4, 512, side, side), 3, 3, 1, 1, 1, 1, wide=w) for w in (True, False))
    print(f"small map {side}x{side}: wide columns {wide.row_len * wide.Ho} per image against {exact.row_len * exact.Ho} "
          f"exact (+{wide.row_len / exact.row_len - 1:.0%} products)")

# %%
L.finish()
