"""Graduate to PyTorch: write an npunet model as a standalone PyTorch module, its weights, and a
distributed training script that continues from them.

    npunet.export.to_pytorch(model, "out")        # or: npunet export --checkpoint RUN/checkpoint.npz --out out

writes out/model.py (the model's definition, generated from its module tree: ``torch.nn`` layers under
the same attribute names, so the ``state_dict`` keys are npunet's; a forward written like the paper's
figure; ``build_model()``), out/weights.safetensors (parameters and buffers under those keys),
out/train_ddp.py (``torchrun --nproc_per_node N out/train_ddp.py --data DIR``: the run's loss and recipe
with DistributedDataParallel) and out/README.md.  An ``EncoderUNet`` becomes a short model.py calling
``segmentation_models_pytorch.Unet`` (npunet's encoder U-Nets equal it weight for weight).

npunet never imports torch: the generated files are text.  What cannot be written as PyTorch is
refused with one line naming it (:class:`ExportError`).
"""
import json
import os
import pprint
import re

from . import nn
from .models import EncoderUNet, UNet, UNet3Plus, UNetPlusPlus
from .models.blocks import ConvBNReLU, DoubleConv, SeparableConv2d
from .models.unet import Up
from .models.unet3plus import Branch, CGMGate, Fuse, branch_name

FILES = ("model.py", "weights.safetensors", "train_ddp.py", "README.md")


class ExportError(ValueError):
    """A model (or one of its layers) that the PyTorch export cannot express; the message names it."""


# ================================================================== leaf layers -> torch.nn constructors

def _pair(v):
    """(a, a) -> a, so the generated call reads like hand-written PyTorch."""
    if not isinstance(v, (tuple, list)):
        return v
    v = tuple(v)
    return v[0] if len(set(v)) == 1 else v


def _num(v):
    v = _pair(v)
    if isinstance(v, tuple):
        return "(" + ", ".join(_num(x) for x in v) + ")"
    return repr(int(v)) if float(v).is_integer() else repr(float(v))


def _conv(m):
    args = [str(m.in_channels), str(m.out_channels), _num(m.kernel_size)]
    if _pair(m.stride) != 1:
        args.append(f"stride={_num(m.stride)}")
    if _pair(m.padding) != 0:
        args.append(f"padding={_num(m.padding)}")
    if _pair(getattr(m, "output_padding", 0)) != 0:
        args.append(f"output_padding={_num(m.output_padding)}")
    if m.groups != 1:
        args.append(f"groups={m.groups}")
    if m.bias is None:
        args.append("bias=False")
    return f"nn.{type(m).__name__}({', '.join(args)})"


def _maxpool(m):
    k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
    return f"nn.MaxPool2d({_num(k)}" + ("" if s == k else f", stride={_num(s)}") + \
        ("" if p == 0 else f", padding={_num(p)}") + ")"


def _upsample(m):
    what = f"size={_num(m.size)}" if m.size is not None else f"scale_factor={_num(m.scale_factor)}"
    ac = "" if m.align_corners is None else f", align_corners={m.align_corners}"
    return f"nn.Upsample({what}, mode={m.mode!r}{ac})"


def _batchnorm(m):
    extra = ("" if m.eps == 1e-5 else f", eps={m.eps!r}") + ("" if m.momentum == 0.1 else f", momentum={m.momentum!r}")
    return f"nn.BatchNorm2d({m.num_features}{extra})"


LEAVES = {  # npunet layer -> the torch.nn call that is the same layer (same state_dict entries)
    nn.Conv2d: _conv, nn.ConvTranspose2d: _conv, nn.MaxPool2d: _maxpool, nn.Upsample: _upsample,
    nn.BatchNorm2d: _batchnorm, nn.ReLU: lambda m: "nn.ReLU()", nn.Sigmoid: lambda m: "nn.Sigmoid()",
    nn.Identity: lambda m: "nn.Identity()", nn.Flatten: lambda m: "nn.Flatten()",
    nn.Dropout: lambda m: f"nn.Dropout({m.p!r})",
    nn.AdaptiveMaxPool2d: lambda m: f"nn.AdaptiveMaxPool2d({_num(m.output_size)})",
    # parameter-free joins, defined in the generated file (PyTorch has no module for them)
    nn.Concat: lambda m: "Concat()", nn.CropConcat: lambda m: "CropConcat()", nn.CenterCrop: lambda m: "CenterCrop()",
    nn.Add: lambda m: "Add()", CGMGate: lambda m: "CGMGate()",
}

# The blocks: children as keyword arguments (registration order = npunet's, so state_dict order too) and
# the forward written out.  DoubleConv's forward depends on its ``block``; see _block_class.
BLOCK_FORWARDS = {
    "DoubleConv": '''class DoubleConv(Block):
    """(3x3 conv => [BN] => ReLU) * 2.  x: (N, C_in, H, W) -> (N, C_out, H', W'), H' = H - 4 (valid) or H (same)."""

    def forward(self, x):
        x = self.relu1(self.bn1(self.conv1(x)))
        return self.relu2(self.bn2(self.conv2(x)))
''',
    "DoubleConv:residual": '''class DoubleConv(Block):
    """Residual unit: ReLU(BN(conv2(ReLU(BN(conv1 x)))) + shortcut(x)); the shortcut cropped when unpadded."""

    def forward(self, x):
        h = self.relu1(self.bn1(self.conv1(x)))
        h = self.bn2(self.conv2(h))
        s = self.shortcut(x)
        if self.crop is not None:
            s = self.crop(s, h)
        return self.relu2(self.add(h, s))
''',
    "SeparableConv2d": '''class SeparableConv2d(Block):
    """Depthwise k x k conv (groups = C_in) then pointwise 1x1 (Mobile U-Net)."""

    def forward(self, x):
        return self.pointwise(self.depthwise(x))
''',
    "ConvBNReLU": '''class ConvBNReLU(Block):
    """conv => [BN] => ReLU."""

    def forward(self, x):
        return self.relu(self.bn(self.conv(x)))
''',
    "Up": '''class Up(Block):
    """One expansive step: up-sample x by 2, (crop-and-)concatenate [skip, x], DoubleConv."""

    def forward(self, x, skip):
        return self.conv(self.cat(skip, self.up(x)))
''',
    "Branch": '''class Branch(Block):
    """A full-scale skip: resample to the decoder stage's scale, 3x3 conv => BN => ReLU."""

    def forward(self, x):
        return self.relu(self.bn(self.conv(self.resample(x))))
''',
    "Fuse": '''class Fuse(Block):
    """Concatenate the five branches, 3x3 conv => BN => ReLU."""

    def forward(self, *xs):
        return self.relu(self.bn(self.conv(self.cat(*xs))))
''',
}
BLOCKS = {DoubleConv: "DoubleConv", SeparableConv2d: "SeparableConv2d", ConvBNReLU: "ConvBNReLU", Up: "Up",
          Branch: "Branch", Fuse: "Fuse"}

JOINS = {
    "Concat": '''class Concat(nn.Module):
    """Channel concatenation: (N, C1, H, W), (N, C2, H, W), ... -> (N, C1 + C2 + ..., H, W)."""

    def forward(self, *xs):
        return torch.cat(xs, dim=1)
''',
    "CropConcat": '''class CropConcat(nn.Module):
    """Copy and crop: center-crop skip to x's size ((Hs - H) // 2 off the top/left), then [skip, x]."""

    def forward(self, skip, x):
        H, W = x.shape[2:]
        top, left = (skip.shape[2] - H) // 2, (skip.shape[3] - W) // 2
        return torch.cat([skip[:, :, top:top + H, left:left + W], x], dim=1)
''',
    "CenterCrop": '''class CenterCrop(nn.Module):
    """Center-crop x to like's height and width."""

    def forward(self, x, like):
        H, W = like.shape[2:]
        top, left = (x.shape[2] - H) // 2, (x.shape[3] - W) // 2
        return x[:, :, top:top + H, left:left + W]
''',
    "Add": '''class Add(nn.Module):
    def forward(self, a, b):
        return a + b
''',
    "CGMGate": '''class CGMGate(nn.Module):
    """The classification-guided module in eval: sigmoid(seg) * argmax(cls), an absent organ giving 0."""

    def forward(self, seg, cls):
        decision = cls.argmax(dim=1).to(seg.dtype)[:, None, None, None]   # (N, 1, 1, 1), 0 or 1
        return torch.sigmoid(seg) * decision
''',
}

BLOCK_BASE = '''class Block(nn.Module):
    """A named block: its children are given as keyword arguments, in npunet's order (the state_dict keys)."""

    def __init__(self, **children):
        super().__init__()
        for name, child in children.items():
            setattr(self, name, child)
'''


class _Emitter:
    """Walks an npunet module tree and writes each child as a PyTorch constructor expression."""

    def __init__(self, root_label):
        self.root, self.used = root_label, set()

    def expr(self, m, path, indent):
        if m is None:
            return "None"
        t = type(m)
        if t in LEAVES:
            s = LEAVES[t](m)
            if t in (nn.Concat, nn.CropConcat, nn.CenterCrop, nn.Add, CGMGate):
                self.used.add(t.__name__)
            return s
        pad = " " * (indent + 4)
        if t is nn.Sequential:
            items = [self.expr(c, f"{path}.{n}", indent + 4) for n, c in m.named_children()]
            return "nn.Sequential(\n" + "".join(f"{pad}{e},\n" for e in items) + " " * indent + ")"
        if t in BLOCKS:
            name = BLOCKS[t]
            key = name + (":residual" if t is DoubleConv and m.block == "residual" else "")
            if name == "DoubleConv" and self.used & {"DoubleConv", "DoubleConv:residual"} - {key}:
                raise ExportError(f"export: {self.root} mixes residual and plain DoubleConv blocks ('{path}'); "
                                  f"one model.py holds one DoubleConv forward")
            self.used.add(key)
            kids = []
            for n, c in vars(m).items():          # assignment order: absent parts (None) in their place
                if n in m._modules:
                    kids.append((n, self.expr(c, f"{path}.{n}", indent + 4)))
                elif c is None and n in ("bn1", "bn2", "bn"):
                    kids.append((n, "nn.Identity()"))   # no BatchNorm: no state_dict key, a one-line forward
                elif c is None and n == "crop":
                    kids.append((n, "None"))
            one = f"{name}(" + ", ".join(f"{n}={e}" for n, e in kids) + ")"
            if "\n" not in one and indent + len(one) <= 118:   # short blocks on one line
                return one
            return f"{name}(\n" + "".join(f"{pad}{n}={e},\n" for n, e in kids) + " " * indent + ")"
        raise ExportError(f"export: {self.root}: layer '{path}' is a {t.__name__}, which the PyTorch export cannot "
                          f"write (it knows {', '.join(sorted({k.__name__ for k in list(LEAVES) + list(BLOCKS)}))})")

    def classes(self):
        out = [BLOCK_BASE] if self.used & set(BLOCK_FORWARDS) else []
        out += [BLOCK_FORWARDS[k] for k in BLOCK_FORWARDS if k in self.used]
        out += [JOINS[k] for k in JOINS if k in self.used]
        return out


# ================================================================== forwards, one per family, from the config

def _forward_unet(m):
    D = m.depth
    lines = ["x1 = self.down1(x)"]
    lines += [f"x{i} = self.down{i}(self.pool{i - 1}(x{i - 1}))" for i in range(2, D + 2)]
    if m.drop is not None:
        lines.append(f"x{D + 1} = self.drop(x{D + 1})")
    lines.append(f"x = self.up1(x{D + 1}, x{D})")
    lines += [f"x = self.up{k}(x, x{D + 1 - k})" for k in range(2, D + 1)]
    lines.append("return self.outc(x)")
    doc = ("Fig. 1 of Ronneberger et al. 2015: the contracting path (left), the bottleneck,\n"
           "        the expansive path (right) taking each level's map over the skip.")
    return doc, lines


def _forward_unetpp(m):
    L = m.depth
    lines = ["x0_0 = self.x0_0(x)"]
    lines += [f"x{i}_0 = self.x{i}_0(self.pool{i}(x{i - 1}_0))" for i in range(1, L + 1)]
    for j in range(1, L + 1):        # column by column, as the paper's figure
        for i in range(L + 1 - j):
            prev = ", ".join(f"x{i}_{k}" for k in range(j))
            lines.append(f"x{i}_{j} = self.x{i}_{j}(self.cat{i}_{j}({prev}, self.up{i + 1}_{j - 1}(x{i + 1}_{j - 1})))")
    if not m.deep_supervision:
        lines.append(f"return self.final(x0_{L})")
    else:
        lines.append("heads = [" + ", ".join(f"self.final{j}(x0_{j})" for j in range(1, L + 1)) + "]")
        lines.append("if self.training:")
        lines.append("    return heads                          # train on the mean of the heads' losses")
        lines.append("out = heads[0]")
        lines.append("for h in heads[1:]:")
        lines.append("    out = out + h")
        lines.append("return out / len(heads)                   # eval: the mean of the heads (\"accurate mode\")")
    doc = ("Zhou et al. 2018, Fig. 1: node X^{i,j} = H([X^{i,0}, ..., X^{i,j-1}, U(X^{i+1,j-1})]),\n"
           f"        the nodes with i + j <= {L}.")
    return doc, lines


def _forward_unet3plus(m):
    lines = ["h1 = self.conv1(x)                          # the encoder X_En^1..5"]
    lines += [f"h{k} = self.conv{k}(self.maxpool{k - 1}(h{k - 1}))" for k in range(2, 6)]
    lines.append("hd5 = h5                                    # the bottleneck is decoder stage 5")
    for i in (4, 3, 2, 1):
        parts = [f"self.{branch_name('enc', k, i)}(h{k})" for k in range(1, i + 1)]
        parts += [f"self.{branch_name('dec', k, i)}(hd{k})" for k in range(i + 1, 6)]
        lines.append(f"hd{i} = self.hd{i}(")
        lines += [f"    {p}," for p in parts]
        lines.append(")")
    seg = "seg"
    if m.deep_supervision:
        lines.append("if self.training:                           # every head, upsampled to full size")
        lines.append("    seg = [self.outconv1(hd1)] + [")
        lines += [f"        self.upscore{k}(self.outconv{k}(hd{k}))," for k in range(2, 6)]
        lines.append("    ]")
        lines.append("else:")
        lines.append("    seg = self.outconv1(hd1)")
    else:
        lines.append("seg = self.outconv1(hd1)")
    if not m.cgm:
        lines.append(f"return {seg}")
    else:
        lines.append("cls = self.cls(hd5)                         # (N, 2): P(absent), P(present)")
        lines.append("if self.training:")
        lines.append("    return seg, cls                         # the classifier trains with BCE on 'mask not empty'")
        lines.append("return self.gate(seg, cls)                  # eval: sigmoid(seg) * argmax(cls)")
    doc = ("Huang et al. 2020, Fig. 1: full-scale skips; decoder stage i fuses every encoder map\n"
           "        at or above its scale (pooled) and every decoder map below it (upsampled).")
    return doc, lines


FORWARDS = {UNet: _forward_unet, UNetPlusPlus: _forward_unetpp, UNet3Plus: _forward_unet3plus}


def _check_forward(model, lines):
    """Every child the written forward calls must be in the model's tree; refuse in one line otherwise."""
    called = dict.fromkeys(re.findall(r"self\.(\w+)", "\n".join(lines)))
    missing = [n for n in called if n != "training" and n not in model._modules]
    if missing:
        raise ExportError(f"export: {model.label}: its forward calls {', '.join(missing)}, which the model does not "
                          f"have; the {type(model).__name__} was changed after construction")


def _pyliteral(v):
    return pprint.pformat(v, width=100, sort_dicts=False)


def model_source(model):
    """The text of model.py for ``model`` (an npunet UNet, UNetPlusPlus, UNet3Plus or EncoderUNet)."""
    cls = type(model)
    if cls is not EncoderUNet and cls not in FORWARDS:
        raise ExportError(f"export: a {cls.__name__} cannot be exported to PyTorch; the export writes "
                          f"UNet, UNetPlusPlus, UNet3Plus and EncoderUNet")
    config = _config(model)
    if cls is EncoderUNet:
        return _encoder_source(config)
    em = _Emitter(model.label)
    body = []
    for name, child in model._modules.items():
        body.append(f"        self.{name} = {em.expr(child, name, 8)}")
    doc, lines = FORWARDS[cls](model)
    _check_forward(model, lines)
    name = cls.__name__
    parts = [HEADER.format(cls=name)]
    parts += em.classes()
    parts.append(f'''class {name}(nn.Module):
    """npunet's {name}(**CONFIG), layer for layer: the same attribute names, so the same state_dict keys."""

    def __init__(self):
        super().__init__()
        self.config = dict(CONFIG)
{chr(10).join(body)}

    def forward(self, x):
        """{doc}"""
{chr(10).join("        " + ln for ln in lines)}
''')
    parts.append(f'''def build_model():
    """{name}(**CONFIG), the run's constructor arguments; load the weights with
    model.load_state_dict(safetensors.torch.load_file("weights.safetensors"), strict=True)."""
    return {name}()
''')
    src = "\n\n".join(parts)
    return src.replace("CONFIG_LITERAL", _pyliteral(config))


HEADER = '''"""{cls} exported from npunet: a standalone PyTorch definition of that exact model.

Generated by ``npunet export`` from the npunet model's module tree; the layers carry npunet's names,
so ``model.load_state_dict(load_file("weights.safetensors"), strict=True)`` takes the trained weights.
Imports only torch.
"""
import torch
from torch import nn

# npunet.models.{cls}(**CONFIG): the constructor arguments of the exported run.
CONFIG = CONFIG_LITERAL
'''


def _encoder_source(config):
    rate = config.get("drop_connect_rate")
    setrate = "" if rate is None else (
        f"\n    model.encoder._drop_connect_rate = {rate!r}   # npunet's drop_connect_rate (SMP's default is 0.2)")
    return f'''"""EncoderUNet exported from npunet: segmentation_models_pytorch's Unet, which npunet's EncoderUNet
equals weight for weight (the same layers, state_dict keys, outputs and gradients)."""
import segmentation_models_pytorch as smp

# npunet.models.EncoderUNet(**CONFIG): the constructor arguments of the exported run.
CONFIG = {_pyliteral(config)}


def build_model():
    """smp.Unet with the run's arguments (no pretrained download: the weights come from weights.safetensors)."""
    model = smp.Unet(CONFIG["encoder_name"], encoder_depth=CONFIG["encoder_depth"], encoder_weights=None,
                     decoder_channels=list(CONFIG["decoder_channels"]), in_channels=CONFIG["in_channels"],
                     classes=CONFIG["num_classes"]){setrate}
    return model
'''


def _config(model):
    cfg = getattr(model, "config", None)
    if not isinstance(cfg, dict):
        raise ExportError(f"export: {type(model).__name__} has no constructor config (model.config)")
    return json.loads(json.dumps(cfg, default=lambda o: o.tolist() if hasattr(o, "tolist") else list(o)))


# ================================================================== weights, training script, README

def state_arrays(model):
    """The state_dict as PyTorch names it: parameters and buffers (BatchNorm running statistics and
    num_batches_tracked as 0-d int64 arrays, as PyTorch keeps them)."""
    return dict(model.state_dict())


def _recipe(run_config, model):
    """The training recipe train_ddp.py follows: the run's config (or npunet's defaults without one)."""
    from .app.config import defaults
    cfg = defaults()
    if run_config:
        cfg.update({k: v for k, v in run_config.items() if k in cfg and k != "augment"})
        cfg["augment"].update(run_config.get("augment") or {})
    keep = ("loss", "weight_map", "optimizer", "lr", "momentum", "weight_decay", "schedule", "epochs", "batch_size",
            "seed", "augment")
    r = {k: cfg[k] for k in keep}
    r["augment"] = dict(r["augment"])
    r["valid_padding"] = isinstance(model, UNet) and model.padding == "valid"
    r["cgm"] = bool(getattr(model, "cgm", False))
    return r


def to_pytorch(model, out_dir, run_config=None, input_range=None):
    """Write ``out_dir``/model.py, weights.safetensors, train_ddp.py and README.md for ``model``.

    model: an npunet UNet, UNetPlusPlus (a pruned one exports the pruned network), UNet3Plus or EncoderUNet.
    run_config: the training config the model came from (a checkpoint's ``config``): train_ddp.py uses its
    loss, optimiser, learning rate, schedule, batch size and augmentation; npunet's defaults without one.
    input_range: the training images' [min, max] (a checkpoint's ``input_range``): train_ddp.py maps each
    image file onto it as ``npunet predict`` does.  Returns the list of written paths.
    """
    from .io import atomic_write, save_safetensors
    src = model_source(model)
    os.makedirs(out_dir, exist_ok=True)
    recipe = _recipe(run_config, model)
    recipe["input_range"] = list(input_range) if input_range else [0.0, 1.0]
    recipe["architecture"] = type(model).__name__
    recipe["in_channels"] = model.in_channels
    recipe["num_classes"] = model.num_classes
    paths = [os.path.join(out_dir, f) for f in FILES]

    def text(s):
        return lambda f: f.write(s.encode())

    atomic_write(paths[0], text(src))
    save_safetensors(paths[1], state_arrays(model))
    atomic_write(paths[2], text(train_source(recipe)))
    atomic_write(paths[3], text(readme_source(model, recipe, out_dir)))
    return paths


def train_source(recipe):
    from .app.export_train import TRAIN_DDP
    return TRAIN_DDP.replace("RECIPE_LITERAL", _pyliteral(recipe))


def readme_source(model, recipe, out_dir):
    from .app.export_train import README
    name = type(model).__name__
    smp = " and segmentation_models_pytorch" if isinstance(model, EncoderUNet) else ""
    return README.format(name=name, smp=smp, loss=recipe["loss"], optimizer=recipe["optimizer"], lr=recipe["lr"],
                         schedule=recipe["schedule"], epochs=recipe["epochs"], batch_size=recipe["batch_size"],
                         channels=recipe["in_channels"], dir=out_dir,
                         smp_pip=" segmentation-models-pytorch" if smp else "")


def export_checkpoint(checkpoint, out_dir, prune=None):
    """``npunet export``: the model in an npunet checkpoint (optionally a U-Net++ pruned to ``prune``)
    written for PyTorch with its run's recipe."""
    from .app.train import load_model
    model, meta = load_model(checkpoint)
    if prune is not None:
        if not isinstance(model, UNetPlusPlus):
            raise ExportError(f"export: --prune applies to a UNetPlusPlus, the checkpoint holds a {type(model).__name__}")
        model = model.prune(prune)
    return to_pytorch(model, out_dir, run_config=meta.get("config"), input_range=meta.get("input_range"))
