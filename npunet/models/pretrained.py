"""Pretrained (ImageNet) encoder weights from the files people download, mapped onto SMP's names.

    model = EncoderUNet("resnet34", encoder_weights="resnet34.safetensors")
    load_encoder_weights(model, "resnet34.safetensors")          # the same, on an existing model

npunet never downloads and never unpickles: the file must be ``.safetensors`` (timm's Hugging Face
files are; a torchvision / efficientnet_pytorch ``.pth`` converts with the one-liner in the error).
The key names are mapped by ``TABLE`` below; the classifier head is not part of a U-Net's encoder
and is skipped (with a note).  After loading, ``model.input_norm`` holds the ImageNet mean and std
the encoder was trained with; training and ``predict`` normalise the images with it.
"""
import os
import re

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# MobileNetV2 (width 1.0): blocks per stage in timm's ``blocks.<stage>.<block>`` = torchvision's features 1..17
_MBV2_STAGES = (1, 2, 3, 4, 3, 3, 1)


def _mbv2_feature(stage, block):
    return 1 + sum(_MBV2_STAGES[:stage]) + block


# The mapping, one row per rule: (file format, source key pattern, SMP encoder key (a template over the
# pattern's groups, or None: the classifier, skipped)).  A key matches the first row of its format.
TABLE = [
    # torchvision's and timm's ResNets use the same names as SMP's ResNet encoder
    ("resnet", r"(conv1|bn1|layer[1-4])\.(.*)", "{0}.{1}"),
    ("resnet", r"fc\.(weight|bias)", None),
    # torchvision's MobileNetV2 = SMP's
    ("mobilenet_v2/torchvision", r"features\.(.*)", "features.{0}"),
    ("mobilenet_v2/torchvision", r"classifier\.1\.(weight|bias)", None),
    # timm's mobilenetv2_100
    ("mobilenet_v2/timm", r"conv_stem\.(.*)", "features.0.0.{0}"),
    ("mobilenet_v2/timm", r"bn1\.(.*)", "features.0.1.{0}"),
    ("mobilenet_v2/timm", r"blocks\.0\.0\.conv_dw\.(.*)", "features.1.conv.0.0.{0}"),
    ("mobilenet_v2/timm", r"blocks\.0\.0\.bn1\.(.*)", "features.1.conv.0.1.{0}"),
    ("mobilenet_v2/timm", r"blocks\.0\.0\.conv_pw\.(.*)", "features.1.conv.1.{0}"),
    ("mobilenet_v2/timm", r"blocks\.0\.0\.bn2\.(.*)", "features.1.conv.2.{0}"),
    ("mobilenet_v2/timm", r"blocks\.(\d)\.(\d)\.conv_pw\.(.*)", "features.{f}.conv.0.0.{2}"),
    ("mobilenet_v2/timm", r"blocks\.(\d)\.(\d)\.bn1\.(.*)", "features.{f}.conv.0.1.{2}"),
    ("mobilenet_v2/timm", r"blocks\.(\d)\.(\d)\.conv_dw\.(.*)", "features.{f}.conv.1.0.{2}"),
    ("mobilenet_v2/timm", r"blocks\.(\d)\.(\d)\.bn2\.(.*)", "features.{f}.conv.1.1.{2}"),
    ("mobilenet_v2/timm", r"blocks\.(\d)\.(\d)\.conv_pwl\.(.*)", "features.{f}.conv.2.{2}"),
    ("mobilenet_v2/timm", r"blocks\.(\d)\.(\d)\.bn3\.(.*)", "features.{f}.conv.3.{2}"),
    ("mobilenet_v2/timm", r"conv_head\.(.*)", "features.18.0.{0}"),
    ("mobilenet_v2/timm", r"bn2\.(.*)", "features.18.1.{0}"),
    ("mobilenet_v2/timm", r"classifier\.(weight|bias)", None),
    # efficientnet_pytorch (lukemelas; SMP's EfficientNet encoders subclass it): the same names
    ("efficientnet", r"(_conv_stem|_bn0|_blocks|_conv_head|_bn1)\.(.*)", "{0}.{1}"),
    ("efficientnet", r"_fc\.(weight|bias)", None),
]

_WHERE = {
    "resnet18": "timm: https://huggingface.co/timm/resnet18.a1_in1k (model.safetensors); torchvision: "
                "resnet18-f37072fd.pth (convert it, see below)",
    "resnet34": "timm: https://huggingface.co/timm/resnet34.a1_in1k (model.safetensors); torchvision: "
                "resnet34-b627a593.pth (convert it, see below)",
    "mobilenet_v2": "timm: https://huggingface.co/timm/mobilenetv2_100.ra_in1k (model.safetensors); torchvision: "
                    "mobilenet_v2-b0353104.pth (convert it, see below)",
    "efficientnet-b0": "efficientnet_pytorch's efficientnet-b0-355c32eb.pth (github.com/lukemelas/EfficientNet-PyTorch "
                       "releases; convert it, see below)",
}

_CONVERT = ('python -c "import torch, safetensors.torch as s; sd = torch.load(\'FILE.pth\', weights_only=True); '
            's.save_file({k: v.contiguous() for k, v in sd.items()}, \'FILE.safetensors\')"')


def _format(encoder_name, keys):
    if encoder_name.startswith("resnet"):
        return "resnet"
    if encoder_name == "mobilenet_v2":
        return "mobilenet_v2/timm" if "conv_stem.weight" in keys else "mobilenet_v2/torchvision"
    return "efficientnet"


def map_keys(encoder_name, keys):
    """-> ({source key: SMP encoder key}, [skipped classifier keys], [keys no rule maps])."""
    fmt = _format(encoder_name, keys)
    rows = [(re.compile(p + r"\Z"), t) for f, p, t in TABLE if f == fmt]
    mapped, skipped, unknown = {}, [], []
    for k in keys:
        for rx, template in rows:
            m = rx.match(k)
            if m:
                if template is None:
                    skipped.append(k)
                elif "{f}" in template:
                    g = m.groups()
                    mapped[k] = template.format(*g, f=_mbv2_feature(int(g[0]), int(g[1])))
                else:
                    mapped[k] = template.format(*m.groups())
                break
        else:
            unknown.append(k)
    return mapped, skipped, unknown


def _first_conv(w, in_channels, key):
    """SMP's rule for a first conv with other than 3 input channels: 1 channel -> the sum over the 3;
    more -> the 3 repeated cyclically, scaled by 3 / in_channels."""
    if in_channels == w.shape[1]:
        return w
    if in_channels == 1:
        return w.sum(axis=1, keepdims=True)
    reps = np.stack([w[:, i % w.shape[1]] for i in range(in_channels)], axis=1)
    return reps * (w.shape[1] / in_channels)


def load_encoder_weights(model, path, log=print):
    """Load ImageNet encoder weights from a local ``.safetensors`` file (timm / torchvision ResNet-18/34
    and MobileNetV2, efficientnet_pytorch's EfficientNet-B0 names) into ``model.encoder`` (an
    EncoderUNet), and set ``model.input_norm`` to ImageNet's mean/std.  Missing, unexpected or
    wrong-shape keys are named; the classifier head is skipped.  Returns the model."""
    from ..io import load_safetensors
    name = model.config["encoder_name"]
    path = os.fspath(path)
    if path.endswith((".pth", ".pt", ".bin", ".ckpt", ".tar")):
        raise ValueError(f"load_encoder_weights: '{path}' is a pickle file, which npunet never loads (unpickling "
                         f"runs code); convert it once to .safetensors with PyTorch: "
                         + _CONVERT.replace("FILE.pth", path).replace("FILE.safetensors", os.path.splitext(path)[0]
                                                                       + ".safetensors"))
    if not path.endswith(".safetensors"):
        raise ValueError(f"load_encoder_weights: expected a .safetensors file, got '{path}'")
    if not os.path.exists(path):
        raise FileNotFoundError(f"load_encoder_weights: no file '{path}'; {name} weights: {_WHERE[name]}")
    sd = load_safetensors(path)
    mapped, skipped, unknown = map_keys(name, list(sd))
    own = {k: v for k, v in model.encoder.state_dict().items()}
    unexpected = unknown + [k for k, t in mapped.items() if t not in own]
    got = {t for t in mapped.values()}
    missing = [k for k in own if k not in got and not k.endswith("num_batches_tracked")]
    if unexpected or missing:
        raise KeyError(f"load_encoder_weights: '{path}' does not fit the {name} encoder: {len(missing)} missing "
                       f"keys {missing[:6]}{' ...' if len(missing) > 6 else ''}, {len(unexpected)} unexpected keys "
                       f"{unexpected[:6]}{' ...' if len(unexpected) > 6 else ''} (is it a {name} file?)")
    first = next(iter(own))                                              # the stem conv's weight
    new = dict(own)
    for k, t in mapped.items():
        v = np.asarray(sd[k])
        if t == first:
            v = _first_conv(v, model.in_channels, k)
        if v.shape != own[t].shape:
            raise ValueError(f"load_encoder_weights: '{k}' in '{path}' has shape {v.shape}, the {name} encoder's "
                             f"'{t}' {own[t].shape}")
        new[t] = v
    model.encoder.load_state_dict(new)
    c = model.in_channels
    model.input_norm = {"mean": _per_channel(IMAGENET_MEAN, c), "std": _per_channel(IMAGENET_STD, c),
                        "source": f"ImageNet ({os.path.basename(path)})"}
    if log and skipped:
        log(f"load_encoder_weights: loaded {len(mapped)} tensors into {name}'s encoder; skipped the ImageNet "
            f"classifier ({', '.join(skipped)}): a U-Net's head is its own segmentation_head")
    return model


def _per_channel(v, c):
    """ImageNet's 3 values for c input channels: 1 -> their mean (a grey image), else repeated."""
    return [float(np.mean(v))] if c == 1 else [float(v[i % 3]) for i in range(c)]


def imagenet_hint(name):
    return (f"EncoderUNet: encoder_weights='imagenet' needs a local file (npunet never downloads): get {name}'s "
            f"ImageNet weights ({_WHERE[name]}) and pass its path: EncoderUNet('{name}', encoder_weights="
            f"'path/to/model.safetensors'); a .pth converts with: {_CONVERT}")


def normalize_input(model, x):
    """x: (N, C, H, W) -> (x - mean) / std per channel when the model records an input_norm, else x."""
    norm = getattr(model, "input_norm", None)
    if not norm:
        return x
    mean = np.asarray(norm["mean"], dtype=x.dtype).reshape(1, -1, 1, 1)
    std = np.asarray(norm["std"], dtype=x.dtype).reshape(1, -1, 1, 1)
    return (x - mean) / std
