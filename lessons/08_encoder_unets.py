# %% [markdown]
# # Lesson 8: another version of U-Net: swapping the encoder
# Keep U-Net's decoder and skips, replace its contracting path with a classification network:
# a ResNet (a ResNet-encoder U-Net), a MobileNetV2 (Mobile U-Net) or an EfficientNet (Eff-UNet).
# (The name "Residual U-Net" belongs to another model: ResUNet, Zhang, Liu & Wang 2018, which puts
# residual units inside U-Net's own encoder and decoder; npunet's `UNet(block="residual")` in lesson 2
# is in that spirit. Here only the encoder is a ResNet, the decoder is U-Net's.) This is
# what segmentation_models_pytorch's `smp.Unet(encoder_name=...)` builds, and npunet's
# `EncoderUNet` is that model weight for weight: the same `state_dict` keys and shapes, the same
# outputs and gradients, so weights move between the two as `.safetensors` files.
#
# Run: `python lessons/08_encoder_unets.py [--fast] [--step]`, or open it as a notebook.
# Run time on a 2-core CPU after `npunet warmup` (run it once per machine before class; without it a first run compiles for up to ~30 s more): full 3 min, `--class` 50 s, `--fast` 20 s, before step 7 (transfer learning), which adds about 20 s to `--fast` and more to the longer sizes.

# %%
import os
import time

import numpy as np

import npunet
from npunet import nn
from npunet.bench import conv_flops
from npunet.demo import run_demo
from npunet.lesson import Lesson, table
from npunet.models import EncoderUNet

L = Lesson("Lesson 8: another version of U-Net: swapping the encoder")
rng = np.random.default_rng(0)
ENCODERS = {"resnet34": "ResNet-encoder U-Net", "mobilenet_v2": "Mobile U-Net", "efficientnet-b0": "Eff-UNet"}

# %% [markdown]
# ## Step 1: three encoders under one decoder
# Every encoder returns five feature maps at 1/2, 1/4, 1/8, 1/16 and 1/32 of the input; the decoder
# upsamples the deepest by 2 (nearest), concatenates the next shallower one and applies two 3x3
# conv-BN-ReLU. There are five decoder blocks but only four skips: the fifth block, back at full
# resolution, has no encoder map to concatenate (the encoder's first map is already at 1/2). Then a
# 3x3 conv makes the logits. Input sides must divide by 32.

# %%
L.step("parameters, FLOPs, memory and speed side by side")
S = L.pick(256, 64)
x = rng.standard_normal((1, 3, S, S)).astype(np.float32)
rows = []
for name, title in ENCODERS.items():
    m = EncoderUNet(name)
    info = npunet.summary(m, (1, 3, S, S), print_fn=lambda *a: None)
    m(x)
    t = time.perf_counter()
    y = m(x)
    m.backward(np.ones_like(y))
    step = time.perf_counter() - t
    rows.append([f"{title} ({name})", f"{m.num_parameters():,}", f"{conv_flops(m, x.shape) / 1e9:.2f}",
                 f"{info['activation_bytes'] / 2**20:.0f}", f"{step:.2f}"])
    print(name, "features:", [f.shape[1:] for f in m.encoder(x)][1:])
table(rows, ["model", "parameters", f"GFLOP fwd @{S}", "MiB kept for backward", "fwd+bwd s"])
print("smp.Unet counts (3 -> 1): resnet34 24,436,369, mobilenet_v2 6,628,945, efficientnet-b0 6,251,469")

# %% [markdown]
# ## Step 2: the depthwise-separable saving, by hand
# A k x k convolution from C to C' channels costs C·C'·k² weights and as many multiply-adds per
# pixel. MobileNet splits it: a depthwise k x k (one filter per channel, C·k²) and a pointwise 1x1
# (C·C'). The ratio is (C·k² + C·C') / (C·C'·k²) = 1/C' + 1/k²: about 1/9 for 3x3 kernels.

# %%
L.step("depthwise + pointwise vs one full convolution")
C, Cp, k = 144, 24, 3
full = nn.Conv2d(C, Cp, k, padding=1, bias=False)
dw, pw = nn.Conv2d(C, C, k, padding=1, groups=C, bias=False), nn.Conv2d(C, Cp, 1, bias=False)
by_hand = (C * k * k + C * Cp) / (C * Cp * k * k)
print(f"full {C}->{Cp} {k}x{k}: {full.num_parameters():,} weights; depthwise {dw.num_parameters():,} + "
      f"pointwise {pw.num_parameters():,} = {dw.num_parameters() + pw.num_parameters():,}")
print(f"ratio {(dw.num_parameters() + pw.num_parameters()) / full.num_parameters():.3f} = 1/{Cp} + 1/{k * k} = {by_hand:.3f}")
block = EncoderUNet("mobilenet_v2").encoder.features[3]  # an inverted residual: 24 -> 144 -> 144 -> 24
print("MobileNetV2's features.3:", [(type(c[0] if isinstance(c, nn.Sequential) else c).__name__,
                                     (c[0] if isinstance(c, nn.Sequential) else c).weight.shape)
                                    for c in block.conv if isinstance(c, (nn.Sequential, nn.Conv2d))])

# %% [markdown]
# ## Step 3: an MBConv block, step by step
# EfficientNet's block 3 (24 -> 40 channels, 5x5 depthwise, stride 2): expand 1x1 to 6·24 = 144
# (SiLU), depthwise 5x5 with TensorFlow's "same" padding (1 pixel left/top, 2 right/bottom before
# a stride-2 conv), squeeze-and-excitation (global average -> 1x1 down to 24/4 = 6 -> SiLU -> 1x1
# up to 144 -> sigmoid, a gate per channel), then project 1x1 to 40 (no activation).

# %%
L.step("MBConv: expand, depthwise, squeeze-and-excitation, project")
enc = EncoderUNet("efficientnet-b0").encoder
b = enc._blocks[3]
h = rng.standard_normal((1, 24, 32, 32)).astype(np.float32)
steps = [("input", h)]
e = b._swish0(b._bn0(b._expand_conv(h)))
steps.append(("expand 1x1 + BN + SiLU", e))
p = b._depthwise_conv.static_padding(e)
steps.append((f"TF 'same' pad {b._depthwise_conv.static_padding.padding} (l, r, t, b)", p))
d = b._swish1(b._bn1(b._depthwise_conv(e)))            # the conv pads as above, then convolves
steps.append(("depthwise 5x5 /2 + BN + SiLU", d))
s = b._squeeze(d)
steps.append(("squeeze: global average", s))
g = b._gate(b._se_expand(b._swish_se(b._se_reduce(s))))
steps.append(("excite: 1x1 -> SiLU -> 1x1 -> sigmoid", g))
out = b._bn2(b._project_conv(b._excite(g, d)))
steps.append(("gate x features, project 1x1 + BN", out))
table([[n, a.shape] for n, a in steps], ["step", "shape"])
print("equals the block's own forward:", bool(np.allclose(out, b(h), atol=1e-6)))

# %% [markdown]
# ## Step 4: the architecture, drawn from the model
# The Mobile U-Net with every inverted residual as a box: down the left at 1/2 ... 1/32, the skips
# across, the decoder blocks up the right.

# %%
L.step("architecture diagram")
from npunet.viz import draw_architecture  # noqa: E402
fig = draw_architecture(EncoderUNet("mobilenet_v2"), (1, 3, 256, 256), L.fig("encoder_unet_architecture.png"),
                        title="Mobile U-Net: MobileNetV2 features 0-18 down, decoder blocks 0-4 up", depth=3)
print("figure:", L.fig("encoder_unet_architecture.png"))

# %% [markdown]
# ## Step 5: a short training run of each
# The same synthetic touching cells, weight map and recipe as the classroom demo (lesson 3), one
# input channel; held-out Dice and instance F1 after the same number of epochs. These encoders
# were designed for ImageNet and start from random weights here: with 48 small images the plain
# U-Net of lesson 3 is a strong baseline.

# %%
L.step("training each encoder U-Net on touching cells")
epochs, n_train = L.pick((12, 48), (1, 4), klass=(4, 24))
rows = []
for name, title in ENCODERS.items():
    r = run_demo(model=name, epochs=epochs, n_train=n_train, progress=False, trace=False,
                 out=L.scratch("lesson8"), log=lambda *a: None)
    rows.append([title, f"{r['metrics']['dice']:.3f}", f"{r['metrics']['instance_f1']:.3f}", f"{r['seconds']:.0f}"])
table(rows, ["model", "held-out Dice", "instance F1", "seconds"])

# %% [markdown]
# ## Step 6: the weights carry over
# `model.save("w.safetensors")` writes the tensors under PyTorch's names and layouts; in PyTorch:
# ```python
# from safetensors.torch import load_file
# net = smp.Unet("resnet34", encoder_weights=None, in_channels=3, classes=1)
# net.load_state_dict(load_file("w.safetensors"), strict=True)
# ```
# and a PyTorch model saved with `safetensors.torch.save_file(net.state_dict(), path)` loads into
# `EncoderUNet("resnet34").load(path)`, where missing, unexpected or wrong-shape keys are named.

# %%
L.step("save and load as safetensors")
m = EncoderUNet("resnet34")
path = os.path.join(L.scratch("lesson8_weights"), "w.safetensors")
m.save(path)
state = npunet.io.load_state(path)
print(f"{len(state)} tensors, e.g. {list(state)[:3]}; {os.path.getsize(path) / 2**20:.0f} MiB")
again = EncoderUNet("resnet34").load(path)
print("loaded back identical:", all(np.array_equal(v, again.state_dict()[k]) for k, v in m.state_dict().items()))

# %% [markdown]
# ## Step 7: transfer learning: a pretrained encoder, frozen
# SMP users start the encoder from ImageNet: `smp.Unet("resnet18", encoder_weights="imagenet")`. npunet
# never downloads; with a local file (timm's `model.safetensors` from huggingface.co/timm/resnet18.a1_in1k)
# `EncoderUNet("resnet18", in_channels=1, encoder_weights="resnet18.safetensors")` loads it (for a grey
# image the first conv's RGB filters are summed, as SMP does) and records ImageNet's mean and std, which
# training and `predict` then apply. Set the environment variable NPUNET_RESNET18 to such a file to use it here.
#
# Without one, the lesson makes its own "pretrained" encoder: it trains a ResNet-18 U-Net on synthetic
# touching cells (a source task with as much data as we like), saves the encoder under torchvision's names
# and loads that. Then, on the nuclei tiles of lesson 7: the pretrained encoder frozen
# (`net.encoder.requires_grad_(False)`: only the decoder learns, and the encoder's weight-gradient GEMMs are
# skipped) against the same U-Net trained from scratch, the same steps.

# %%
L.step("transfer learning: a frozen pretrained encoder vs from scratch on the nuclei tiles")
from npunet import losses, optim  # noqa: E402
from npunet.data import DataLoader, SegmentationDataset, make_cells, nuclei_split  # noqa: E402
from npunet.io import save_safetensors  # noqa: E402
from npunet.models import load_encoder_weights  # noqa: E402
from npunet.train import Trainer, evaluate  # noqa: E402

small = dict(in_channels=1, encoder_depth=3, decoder_channels=(32, 16, 8))
weights = os.environ.get("NPUNET_RESNET18")
if not weights:
    npunet.manual_seed(0)
    src = EncoderUNet("resnet18", **small)
    xs, ls, ms = make_cells(L.pick(48, 8), 64, seed=3)
    opt = optim.Adam(src.parameters(), 3e-3)
    Trainer(src, losses.BCEWithLogitsLoss(), opt, DataLoader(SegmentationDataset(xs, ms, ls, weight_map=False), 8, seed=0),
            progress=False, log=None).fit(L.pick(6, 1))
    weights = os.path.join(L.scratch("lesson8_pretrain"), "resnet18_cells.safetensors")
    save_safetensors(weights, {k[len("encoder."):]: v for k, v in src.state_dict().items() if k.startswith("encoder.")})
    print("pretrained on synthetic cells; encoder saved with torchvision's names:", weights)
split = nuclei_split(tile=L.pick(128, 64))
(xtr, ltr, mtr), (xte, lte, mte) = split["train"], split["test"]
rows = []
for label, pretrained in (("pretrained encoder, frozen", True), ("from scratch", False)):
    npunet.manual_seed(1)
    net = EncoderUNet("resnet18", **small)
    if pretrained:
        load_encoder_weights(net, weights, log=None)
        if not os.environ.get("NPUNET_RESNET18"):
            net.input_norm = None     # our own encoder saw raw [0, 1] images, not ImageNet-normalised ones
        net.encoder.requires_grad_(False)
    trainable = sum(p.size for p in net.parameters() if p.requires_grad)
    opt = optim.Adam([p for p in net.parameters() if p.requires_grad], 3e-3)
    tr = Trainer(net, losses.BCEWithLogitsLoss(), opt, DataLoader(SegmentationDataset(xtr, mtr, ltr, weight_map=False),
                 4, seed=0), progress=False, log=None)
    t0 = time.perf_counter()
    tr.fit(L.pick(8, 1))
    r = evaluate(net, xte, mte, lte)
    rows.append([label, f"{trainable:,}", f"{r['dice']:.3f}", f"{r['instance_f1']:.3f}", f"{time.perf_counter() - t0:.0f}"])
table(rows, ["ResNet-18 U-Net", "trained parameters", "held-out Dice", "instance F1", "seconds"])

# %%
L.finish()
