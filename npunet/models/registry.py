"""The model registry: one entry per architecture, read by the training config (its choices and
defaults), checkpoints (``architecture`` -> class), the command line (``npunet demo/explain --model``,
``npunet summary --model``), the demo presets and the architecture diagrams.

Adding a model is one :class:`ModelEntry` in :data:`REGISTRY` (after writing its class).
"""
from dataclasses import dataclass, field

from .encoder_unet import EncoderUNet
from .unet import UNet
from .unet3plus import UNet3Plus
from .unetpp import UNetPlusPlus


@dataclass(frozen=True)
class ModelEntry:
    """One architecture.

    name: the class name, the config's ``model`` and a checkpoint's ``architecture``.
    cls: the model class; its constructor arguments are the config's ``model_config`` keys.
    defaults: ``model_config`` defaults (also the demo's classroom preset).
    presets: command-line names (``npunet demo --model NAME``) -> ``model_config`` overrides of ``defaults``.
    summary: ``(in_channels, num_classes, base, depth, same) -> (model, default input side)`` for
        ``npunet summary --model`` (the paper-sized network; base/depth None: the model's own); None: not offered.
    layout: how the architecture diagram places the blocks: "levels" (by resolution) or "nested"
        (U-Net++'s triangle of nodes x_{i,j}).
    """
    name: str
    cls: type
    defaults: dict
    presets: dict = field(default_factory=dict)
    summary: object = None
    layout: str = "levels"


def _summary_unet(in_channels, num_classes, base, depth, same):
    m = UNet(in_channels, num_classes, 64 if base is None else base, depth=4 if depth is None else depth,
             padding="same" if same else "valid")
    return m, 256 if same else 572


def _summary_unetpp(in_channels, num_classes, base, depth, same):
    base, depth = base or 32, depth or 4
    return UNetPlusPlus(in_channels, num_classes, filters=[base * 2 ** i for i in range(depth + 1)], depth=depth,
                        deep_supervision=True), 256


def _summary_unet3plus(in_channels, num_classes, base, depth, same):
    if depth not in (None, 4):
        raise ValueError(f"UNet 3+ has five levels (depth 4), got --depth {depth}")
    base = base or 64
    return UNet3Plus(in_channels, num_classes, filters=[base * 2 ** i for i in range(5)], cat_channels=base,
                     deep_supervision=True, cgm=True), 256


REGISTRY = {e.name: e for e in (
    ModelEntry("UNet", UNet,
               dict(in_channels=1, num_classes=2, base_channels=16, depth=3, padding="same", batch_norm=True),
               presets={"unet": {}}, summary=_summary_unet),
    ModelEntry("UNetPlusPlus", UNetPlusPlus,
               dict(in_channels=1, num_classes=2, filters=[8, 16, 32, 64], depth=3, deep_supervision=True),
               presets={"unetpp": {}}, summary=_summary_unetpp, layout="nested"),
    ModelEntry("UNet3Plus", UNet3Plus,
               dict(in_channels=1, num_classes=2, filters=[8, 16, 32, 64, 128], cat_channels=8, deep_supervision=True),
               presets={"unet3plus": {}}, summary=_summary_unet3plus),
    ModelEntry("EncoderUNet", EncoderUNet, dict(encoder_name="resnet18", in_channels=1, num_classes=2),
               presets={n: {"encoder_name": n} for n in ("resnet18", "resnet34", "mobilenet_v2", "efficientnet-b0")}),
)}


def presets():
    """Every command-line model name -> (architecture, model_config), in registry order."""
    return {p: (e.name, dict(e.defaults, **over)) for e in REGISTRY.values() for p, over in e.presets.items()}


def summary_models():
    """Command-line name -> entry, for the architectures ``npunet summary`` draws."""
    return {p: e for e in REGISTRY.values() if e.summary for p in e.presets}


def entry_of(model):
    """The registry entry of a model instance (None for a model not in the registry)."""
    return REGISTRY.get(type(model).__name__)
