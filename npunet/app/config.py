"""The training config: a declared schema (type, range, default, meaning of every key) and its
validation, done before anything is built.  ``npunet train --help-config`` prints it.

A user's config is merged into the defaults: top-level keys replace, the nested ``model_config``
merges into the chosen model's own defaults and ``augment`` into the augmentation defaults.
"""
import difflib
import json
import math
import os
from dataclasses import dataclass

from ..io import ConfigError  # noqa: F401  (defined there so that data/ can raise it)
from ..models.registry import REGISTRY


@dataclass(frozen=True)
class Key:
    kind: str            # "int", "float", "bool", "str", "choice", "dict", "int_or_null"
    default: object
    doc: str
    low: float = None    # inclusive bounds for numbers
    high: float = None
    high_open: bool = False
    choices: tuple = ()

    def describe(self):
        if self.kind == "choice":
            return "one of " + ", ".join(repr(c) for c in self.choices)
        what = {"int": "integer", "float": "number", "bool": "true/false", "str": "string", "dict": "object",
                "int_or_null": "integer or null"}[self.kind]
        if self.low is not None and self.high is not None:
            return f"{what} in [{self.low}, {self.high}{')' if self.high_open else ']'}"
        if self.low is not None:
            return f"{what} >= {self.low}" if self.low != 0 or self.kind == "int" else f"{what} >= 0"
        return what


LOSSES = ("ce", "bce", "dice", "iou", "focal", "bce_dice", "focal_msssim_iou")

# The architectures and each one's model_config defaults (also the classroom presets of ``npunet demo``):
# read from the model registry, npunet.models.registry.
MODELS = tuple(REGISTRY)
MODEL_DEFAULTS = {name: e.defaults for name, e in REGISTRY.items()}

AUGMENT = {
    "flips": Key("bool", True, "random flips and 90-degree rotations"),
    "elastic_p": Key("float", 0.3, "probability of an elastic deformation per image", 0, 1),
    "elastic_sigma": Key("float", 10.0, "elastic deformation strength (pixels)", 0.1),
    "gray": Key("bool", True, "random gray-value (brightness/contrast) changes"),
    "crop": Key("int_or_null", None, "random crop side (null: no crop)", 1, 8192),
}

SCHEMA = {
    "model": Key("choice", "UNet", "architecture", choices=MODELS),
    "model_config": Key("dict", None, "constructor arguments, merged into the model's defaults "
                                      "(UNet: " + json.dumps(MODEL_DEFAULTS["UNet"]) + ")"),
    "data": Key("str", "synthetic", "a folder with images/ + masks/ (or image/ + label/) paired by file stem "
                                    "(a.png <-> a.png or a_mask.png), TIFF stacks 'images.tif:masks.tif', "
                                    "'synthetic' (touching cells), 'nuclei' (the DSB 2018 image), or an .npz "
                                    "with images (N, C, H, W), masks (N, H, W) [, labels (N, H, W)]"),
    "n_train": Key("int", 48, "synthetic training images", 1, 100_000),
    "n_val": Key("int", 8, "held-out images (synthetic: generated; .npz: the last n_val; a folder: chosen by "
                           "the seed). Default for a folder or .npz: about 20% of the images (1..8)", 1, 100_000),
    "size": Key("int", 128, "synthetic image side; for a folder, the side of the random training crops when "
                            "the images are larger or differ in size", 16, 8192),
    "loss": Key("choice", "ce", "loss function", choices=LOSSES),
    "weight_map": Key("bool", True, "the U-Net border weight map in the loss (needs instance labels)"),
    "optimizer": Key("choice", "adam", "optimiser (adamw: decoupled weight decay)", choices=("adam", "adamw", "sgd")),
    "lr": Key("float", 0.003, "learning rate", 1e-12, 10),
    "momentum": Key("float", 0.99, "SGD momentum", 0, 1, high_open=True),
    "weight_decay": Key("float", 0.0, "L2 weight decay", 0, 1),
    "schedule": Key("choice", "cosine", "learning-rate schedule, stepped once per epoch (plateau: halve the lr "
                                        "when the validation loss stalls; onecycle: over the epochs)",
                    choices=("cosine", "step", "multistep", "plateau", "onecycle", "none")),
    "epochs": Key("int", 20, "training epochs", 1, 1_000_000),
    "batch_size": Key("int", 8, "images per step (a folder or .npz with fewer training images: all of them)", 1, 4096),
    "seed": Key("int", 0, "seed of the weights, the data and the augmentation", 0, 2 ** 63 - 1),
    "augment": Key("dict", None, "augmentation, merged into its defaults: " + ", ".join(
        f"{k} ({v.describe()}, default {json.dumps(v.default)})" for k, v in AUGMENT.items())),
    "out": Key("str", "npunet_run", "run folder (checkpoint.npz is written there after every epoch)"),
}


# Upper bounds of model_config's sizes (the constructors check the lower ones and the types): far above
# anything that trains on one machine, low enough that a typo (base_channels 100000) is named at once.
MODEL_LIMITS = {"in_channels": 1024, "num_classes": 1024, "base_channels": 4096, "depth": 12,
                "cat_channels": 4096, "filters": 16384, "decoder_channels": 16384}


def defaults():
    """The default config as a new dict."""
    cfg = {k: v.default for k, v in SCHEMA.items()}
    cfg["model_config"] = dict(MODEL_DEFAULTS[cfg["model"]])
    cfg["augment"] = {k: v.default for k, v in AUGMENT.items()}
    return cfg


def _type_name(v):
    return "null" if v is None else {"str": "a string", "bool": "a boolean", "list": "a list", "dict": "an object",
                                     "int": "an integer", "float": "a number"}.get(type(v).__name__, type(v).__name__)


def _check_value(where, spec, v):
    bad = f"{where}: expected {spec.describe()}, got {json.dumps(v) if _jsonable(v) else repr(v)} ({_type_name(v)})"
    if spec.kind == "choice":
        if v not in spec.choices:
            close = difflib.get_close_matches(str(v), [str(c) for c in spec.choices], 1, 0.5)
            raise ConfigError(bad + (f"; did you mean {close[0]!r}?" if close else ""))
        return v
    if spec.kind == "bool":
        if not isinstance(v, bool):
            raise ConfigError(bad)
        return v
    if spec.kind == "str":
        if not isinstance(v, str) or not v:
            raise ConfigError(bad)
        return v
    if spec.kind == "int_or_null" and v is None:
        return v
    if spec.kind in ("int", "int_or_null"):
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(bad)
    elif spec.kind == "float":
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(bad)
    if spec.low is not None and v < spec.low:
        raise ConfigError(bad)
    if spec.high is not None and (v >= spec.high if spec.high_open else v > spec.high):
        raise ConfigError(bad)
    return float(v) if spec.kind == "float" else v


def _jsonable(v):
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def _suggest(k, known):
    """The known key the user probably meant: a close spelling, or one that starts like it."""
    close = difflib.get_close_matches(k, known, 1, 0.6)
    if not close:
        close = [c for c in known if c.startswith(k) or k.startswith(c)] or difflib.get_close_matches(k, known, 1, 0.5)
    return close[0] if close else None


def _unknown(where, keys, known):
    msgs = []
    for k in keys:
        close = _suggest(str(k), known)
        msgs.append(repr(k) + (f" (did you mean {close!r}?)" if close else ""))
    return ConfigError(f"{where}: unknown key{'s' if len(keys) > 1 else ''} {', '.join(msgs)}; known: {', '.join(known)}")


def merge(user, base=None, check_data=True):
    """Validate ``user`` (a dict from JSON) and merge it into ``base`` (default: the defaults).
    Returns a new, complete config; raises ConfigError naming the first bad key.
    check_data: False skips the check that a data file exists (a checkpoint's config read for predict)."""
    if not isinstance(user, dict):
        raise ConfigError(f"the config must be a JSON object of key: value pairs, got {_type_name(user)}")
    cfg = json.loads(json.dumps(base)) if base is not None else defaults()
    unknown = [k for k in user if k not in SCHEMA]
    if unknown:
        raise _unknown("config", unknown, list(SCHEMA))
    for k, v in user.items():
        if k not in ("model_config", "augment"):
            cfg[k] = _check_value(f"config key '{k}'", SCHEMA[k], v)
    if "model" in user and (base is None or base.get("model") != cfg["model"]):
        cfg["model_config"] = dict(MODEL_DEFAULTS[cfg["model"]])  # another model: its own defaults
    for k in ("model_config", "augment"):
        if k in user:
            if not isinstance(user[k], dict):
                raise ConfigError(f"config key '{k}': expected an object of key: value pairs, got {_type_name(user[k])}")
            cfg[k] = dict(cfg[k], **user[k])
    unknown = [k for k in cfg["augment"] if k not in AUGMENT]
    if unknown:
        raise _unknown("config key 'augment'", unknown, list(AUGMENT))
    for k, v in cfg["augment"].items():
        cfg["augment"][k] = _check_value(f"config key 'augment.{k}'", AUGMENT[k], v)
    if check_data and cfg["data"] not in ("synthetic", "nuclei"):
        from ..data.files import check_source
        from ..io import InputError, check_input_file
        why = check_source(cfg["data"])
        if os.path.lexists(cfg["data"]) and not os.path.isdir(cfg["data"]):
            try:                                   # a single file: say exactly what is wrong with it
                check_input_file(cfg["data"], "data file")
            except InputError as e:
                why = str(e)
        if why:
            raise ConfigError(f"config key 'data': expected a folder with images/ and masks/, TIFF stacks "
                              f"'images.tif:masks.tif', an .npz file, 'synthetic' or 'nuclei'; got {cfg['data']!r} "
                              f"({why})")
    return cfg


def check_model_config(cfg):
    """Build-time check of model_config against the model's constructor: unknown arguments are named
    with the valid ones; the constructor itself checks types and ranges."""
    import inspect
    cls = REGISTRY[cfg["model"]].cls
    params = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
    unknown = [k for k in cfg["model_config"] if k not in params]
    if unknown:
        raise _unknown(f"config key 'model_config' ({cfg['model']})", unknown, params)
    for k, high in MODEL_LIMITS.items():
        v = cfg["model_config"].get(k)
        for i, x in enumerate(v if isinstance(v, (list, tuple)) else [v]):
            if isinstance(x, (int, float)) and not isinstance(x, bool) and x > high:
                where = f"model_config.{k}" + (f"[{i}]" if isinstance(v, (list, tuple)) else "")
                raise ConfigError(f"config key '{where}': {x} is above the limit {high}")
    return cls


def describe():
    """The schema as text, one key a line (``npunet train --help-config``)."""
    lines = ["Training config keys (JSON); unlisted keys are errors.  Nested objects merge into their defaults.", ""]
    for k, spec in SCHEMA.items():
        default = "the model's defaults" if k == "model_config" else (
            "see below" if k == "augment" else json.dumps(spec.default))
        lines.append(f"  {k:14s} {spec.describe():42s} default {default}")
        lines.append(f"  {'':14s} {spec.doc}")
    lines += ["", "model_config defaults per model (any constructor argument may be given):"]
    lines += [f"  {m:14s} {json.dumps(d)}" for m, d in MODEL_DEFAULTS.items()]
    lines += ["", "augment keys:"]
    lines += [f"  {k:14s} {v.describe():42s} default {json.dumps(v.default)}  ({v.doc})" for k, v in AUGMENT.items()]
    return "\n".join(lines)
