# %% [markdown]
# # Lesson 4: U-Net++, nested skips node by node
# X^{i,0} = H(D(X^{i-1,0})), and for j > 0: X^{i,j} = H([X^{i,0}, …, X^{i,j-1}, U(X^{i+1,j-1})]).
# We build the first nodes by hand, then look at deep supervision, pruning to L1…L4 and the memory
# cost compared with U-Net.
# Exercise: `lessons/exercises/08_unetpp_node.py` (a node and the summed gradients; `python -m npunet check 8`).
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 60 s, `--class` 27 s, `--fast` 4 s.

# %%
import time

import numpy as np

import npunet
from npunet import losses
from npunet.lesson import Lesson, table
from npunet.models import UNet, UNetPlusPlus
from npunet.viz import draw_architecture

L = Lesson("Lesson 4: U-Net++")
rng = np.random.default_rng(0)
S = L.pick(128, 32)

# %% [markdown]
# ## Step 1: the nodes, one by one
# Channels f = (32, 64, 128, 256, 512); with bilinear up-sampling X^{i,j} takes j·f_i + f_{i+1} channels.

# %%
L.step("building X^{0,1}, X^{1,1}, X^{0,2} by hand")
npunet.manual_seed(0)
net = UNetPlusPlus(3, 1, deep_supervision=True)
x = rng.standard_normal((1, 3, S, S)).astype(np.float32)
x00 = net.x0_0(x)
x10 = net.x1_0(net.pool1(x00))
x01 = net.x0_1(net.cat0_1(x00, net.up1_0(x10)))
x20 = net.x2_0(net.pool2(x10))
x11 = net.x1_1(net.cat1_1(x10, net.up2_0(x20)))
x02 = net.x0_2(net.cat0_2(x00, x01, net.up1_1(x11)))
for name, v in [("X^{0,0}", x00), ("X^{1,0}", x10), ("X^{0,1} = H([X00, U(X10)])", x01), ("X^{2,0}", x20),
                ("X^{1,1} = H([X10, U(X20)])", x11), ("X^{0,2} = H([X00, X01, U(X11)])", x02)]:
    print(f"{name:34s} {v.shape}")
print("input channels of X^{0,2}'s first conv:", net.x0_2.conv1.in_channels, "= 2*32 + 64")

# %% [markdown]
# ## Step 2: the backward through the dense nodes: every reused node sums its gradients
# X^{0,0} feeds three consumers (X^{1,0} through the pool, X^{0,1} and X^{0,2} through their
# concatenations); X^{1,0} feeds X^{2,0}, X^{1,1} and, upsampled, X^{0,1}. In the backward each of
# them may run only after all its consumers have passed their gradient back, and it receives the
# **sum**. Written out for the nodes of Step 1 (a small float64 copy) and checked with finite differences.

# %%
L.step("the dense nodes' backward, by hand")
n = UNetPlusPlus(1, 1, filters=(2, 3, 4), depth=2).to(np.float64)


def nodes(x):
    x00 = n.x0_0(x)
    x10 = n.x1_0(n.pool1(x00))
    x01 = n.x0_1(n.cat0_1(x00, n.up1_0(x10)))
    x11 = n.x1_1(n.cat1_1(x10, n.up2_0(n.x2_0(n.pool2(x10)))))
    return n.x0_2(n.cat0_2(x00, x01, n.up1_1(x11)))          # X^{0,2}


def nodes_backward(g):
    d00_a, d01, d_u11 = n.cat0_2.backward(n.x0_2.backward(g))    # X^{0,2} = H([X00, X01, U(X11)])
    d10_a, d_u20 = n.cat1_1.backward(n.x1_1.backward(n.up1_1.backward(d_u11)))
    d10_b = n.pool2.backward(n.x2_0.backward(n.up2_0.backward(d_u20)))
    d00_b, d_u10 = n.cat0_1.backward(n.x0_1.backward(d01))       # X^{0,1} = H([X00, U(X10)])
    d10 = d10_a + d10_b + n.up1_0.backward(d_u10)                 # X^{1,0}'s three consumers
    d00 = d00_a + d00_b + n.pool1.backward(n.x1_0.backward(d10))  # X^{0,0}'s three consumers
    return n.x0_0.backward(d00)


xn = rng.standard_normal((2, 1, 8, 8))
print("X^{0,2}:", nodes(xn).shape, "| hand-written backward vs central differences:",
      npunet.gradcheck_fn(nodes, nodes_backward, xn, max_per_tensor=L.pick(40, 10)))

# %% [markdown]
# ## Step 3: the whole network and deep supervision
# With deep supervision each X^{0,j} has a 1x1 head, and backward returns one gradient per head.
# The paper's loss per head is ½·BCE + Dice (Zhou et al. 2018, eq. 2: L = −(1/N)Σ(½·Y log Ŷ + 2YŶ/(Y + Ŷ))),
# and the authors' Keras code *sums* it over the four heads. npunet's `CombinedLoss.unetpp()` weighs
# BCE and Dice 1:1 and `DeepSupervisionLoss` takes the *mean* over heads. The mean only rescales the
# gradient by 1/4, which Adam's per-parameter normalisation cancels; the 1:1 weighting gives BCE twice
# the paper's share. Both are choices of npunet's (one recipe for every model here); for the paper's
# weights write `CombinedLoss([(BCEWithLogitsLoss(), 0.5), (DiceLoss(), 1.0)])`.

# %%
L.step("deep supervision")
npunet.summary(net, (1, 3, S, S))
draw_architecture(net, (1, 3, 256, 256), L.fig("unetpp_architecture.png"))
heads = net(x)
y = (rng.random((1, 1, S, S)) > 0.5).astype(np.float32)
ds = losses.DeepSupervisionLoss(losses.CombinedLoss.unetpp())
print("heads:", [h.shape for h in heads], "loss", round(ds.forward(heads, y), 4), "per head",
      [round(v, 4) for v in ds.values])
grads = ds.backward()
net.zero_grad()
net.backward(grads)
g_all = net.x0_0.conv1.weight.grad.copy()
print("gradient reaching x0_0.conv1.weight: norm", float(np.linalg.norm(g_all)))

# %% [markdown]
# Deep supervision is "one tensor, several consumers" again: X^{0,1} feeds its own head *and* the
# dense skips into X^{0,2}, X^{0,3}, X^{0,4}; every early weight receives the sum of what the four
# heads send back. Backward is linear in the incoming gradient, so sending one head's gradient at a
# time (the others zero) splits the total exactly: the four parts add up to the full gradient.
#
# What deep supervision adds is *not* short paths. Those come from the dense skips: X^{0,4}
# concatenates X^{0,0} directly (eq. 1), so even final4's gradient reaches x0_0 through one conv block,
# besides the many longer paths through the nested nodes. Deep supervision adds *losses* on X^{0,1},
# X^{0,2}, X^{0,3}: the shallow sub-networks are trained to segment on their own, and that is what
# makes pruning (Step 4) possible: a cut-off L1 or L2 has a head that was trained.

# %%
parts = []
for k in range(len(grads)):
    net.zero_grad()
    net(x)                                                      # each backward needs its own forward
    net.backward([g if j == k else np.zeros_like(g) for j, g in enumerate(grads)])
    parts.append(net.x0_0.conv1.weight.grad.copy())
table([[f"final{k + 1} (on X^(0,{k + 1}))", f"{np.linalg.norm(p):.3e}"] for k, p in enumerate(parts)],
      ["head whose gradient alone is sent back", "|d x0_0.conv1.weight|"])
print("sum of the four parts vs the full backward: max |difference| =",
      f"{float(np.abs(sum(parts) - g_all).max()):.1e}", f"(largest entry {float(np.abs(g_all).max()):.1e}, float32)")

# %% [markdown]
# ## Step 4: pruning to UNet++ L1 … L4
# A model trained with deep supervision can be cut at inference: keep the nodes with i + j ≤ L and
# the head on X^{0,L}. The pruned nets share the trained weights. Parameter counts in the paper's
# configuration (no BN, 2x2 up-convolutions): 100,961 / 511,105 / 2,204,961 / 9,041,601.

# %%
L.step("pruning L1 … L4")
paper = UNetPlusPlus(1, 1, batch_norm=False, up_mode="transpose", deep_supervision=True)
xs = rng.standard_normal((1, 1, S, S)).astype(np.float32)
rows = []
for level in (1, 2, 3, 4):
    p = paper.prune(level).eval()
    p(xs)
    t = time.perf_counter()
    p(xs)
    rows.append([f"L{level}", f"{p.num_parameters():,}", f"{(time.perf_counter() - t) * 1e3:.1f}"])
table(rows, ["pruned", "parameters", f"forward ms @ {S}²"])

# %% [markdown]
# ## Step 5: the trade-off pruning exists for: Dice against milliseconds
# Pruning pays only on a *trained* network: train U-Net++ (filters 8 … 128, depth 4) with deep
# supervision on the touching cells, then cut it to L1 … L4 and measure each on the held-out images:
# Dice, and the forward time (median of several runs). What the trade-off looks like here is printed
# after the table, computed from it; compare it with the paper's Fig. 6 yourself.

# %%
L.step("train with deep supervision, prune, evaluate and time L1 … L4")
import matplotlib.pyplot as plt  # noqa: E402
from npunet.demo import demo_config  # noqa: E402
from npunet.runs import build_run  # noqa: E402
from npunet.train import evaluate  # noqa: E402
cfg = demo_config(model="unetpp", epochs=L.pick(16, 1, klass=6), n_train=L.pick(48, 8), out=L.scratch("lesson4"))
cfg["model_config"] = dict(cfg["model_config"], filters=[8, 16, 32, 64, 128], depth=4)
cfg["size"] = L.pick(128, 32)
trainer = build_run(cfg, progress=False, log=None)
trainer.fit(cfg["epochs"])
xte, mte, _ = trainer.val_data
rows, points = [], []
for level in (1, 2, 3, 4):
    pruned = trainer.model.prune(level).eval()
    dice = evaluate(pruned, xte, mte)["dice"]
    pruned(xte)                                              # warm-up (kernels compiled, buffers allocated)
    times = []
    for _ in range(L.pick(7, 2, klass=3)):
        t = time.perf_counter()
        pruned(xte)
        times.append((time.perf_counter() - t) * 1e3)
    points.append((float(np.median(times)), dice))
    rows.append([f"L{level}", f"{pruned.num_parameters():,}", f"{dice:.3f}", f"{min(times):.1f}",
                 f"{np.median(times):.1f}"])
table(rows, ["pruned", "parameters", "held-out Dice", f"min ms ({len(xte)} images)", "median ms"])
(t1, d1), (t4, d4) = points[0], points[-1]
if d4 > 0:
    print(f"L1 keeps {d1 / d4:.0%} of L4's Dice ({d1:.3f} vs {d4:.3f}) at {t1 / t4:.0%} of its time; the cheapest "
          f"level within 0.01 Dice of L4: L{next(i + 1 for i, (_, d) in enumerate(points) if d >= d4 - 0.01)}")
else:
    print("L4 predicts no foreground after this short run: no trade-off to read off")
fig, ax = plt.subplots(figsize=(5, 3.4))
ax.plot([p[0] for p in points], [p[1] for p in points], "o-")
for level, (ms, dice) in enumerate(points, start=1):
    ax.annotate(f"L{level}", (ms, dice), textcoords="offset points", xytext=(6, 4))
ax.margins(x=0.12, y=0.18)                                  # room for the labels inside the axes
ax.set_xlabel(f"forward time, ms ({len(xte)} images {cfg['size']}², this machine)")
ax.set_ylabel("held-out Dice")
ax.set_title("U-Net++ L1 … L4, pruned after training", fontsize=10)
fig.tight_layout()
fig.savefig(L.fig("unetpp_pruning.png"), dpi=100)
L.done(fig)

# %% [markdown]
# ## Step 6: the memory cost of nested skips
# Every node keeps its inputs for backward, and the dense skips concatenate ever more maps at full
# resolution.

# %%
L.step("activation memory vs U-Net")
rows = []
for name, m in [("U-Net (same, BN, bilinear, base 32)", UNet(3, 1, 32, padding="same", batch_norm=True, up_mode="bilinear")),
                ("U-Net++ (BN, bilinear)", UNetPlusPlus(3, 1)), ("U-Net++ + deep supervision", UNetPlusPlus(3, 1, deep_supervision=True))]:
    r = npunet.summary(m, (1, 3, 256, 256), print_fn=None)
    rows.append([name, f"{m.num_parameters():,}", f"{r['activation_bytes'] / 2**20:.0f} MiB"])
table(rows, ["model", "parameters", "kept for backward @ 256²"])

# %%
L.finish()
