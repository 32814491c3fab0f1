"""``npunet explain``: write the U-Net Explainer page (npunet.viz.explain) for a checkpoint or for a
demo model trained briefly on synthetic cells."""
import glob
import os
import sys
import tempfile
import time

import numpy as np

from ..models.registry import presets

MODELS = list(presets())  # the demo models (the model registry's presets)


def _fail(msg):
    print(msg, file=sys.stderr)
    sys.exit(2)


def _epochs_list(text):
    try:
        v = sorted({int(t) for t in text.split(",") if t.strip()})
    except ValueError:
        raise SystemExit(f"npunet explain: --epochs-snapshots expects epochs like 1,3,10, got {text!r}") from None
    if not v or v[0] < 1:
        raise SystemExit(f"npunet explain: --epochs-snapshots expects positive epochs like 1,3,10, got {text!r}")
    return v


def _read_mask(path, shape):
    """(mask, labels): a PNG/.npy with more than two values is read as instance labels (0 background)."""
    if path.endswith(".npy"):
        a = np.load(path, allow_pickle=False)
    else:
        from PIL import Image
        try:
            a = np.asarray(Image.open(path).convert("I"))
        except (OSError, ValueError) as e:
            _fail(f"npunet explain: cannot read the mask '{path}' ({e})")
    a = np.asarray(a)
    if a.ndim != 2 or a.shape != tuple(shape):
        _fail(f"npunet explain: the mask '{path}' has shape {a.shape}; the image is {tuple(shape)}")
    values = np.unique(a)
    if len(values) > 2:
        return None, a.astype(np.int64)
    return (a > 0).astype(np.int64), None


def _demo_model(name, epochs, snapshots, size, seed, log):
    """Train the demo preset ``name`` briefly; returns (model, input_range, val data, snapshots, note)."""
    from .demo import demo_config
    from .runs import build_run
    from .train import evaluate
    out = tempfile.mkdtemp(prefix="npunet-explain-")
    total = max([epochs] + list(snapshots))
    cfg = demo_config(name, "synthetic", total, seed, out, n_train=24, batch_size=8)
    cfg["size"] = size
    trainer = build_run(cfg, progress=False, log=lambda *a: None)
    t0 = time.perf_counter()
    snaps = []
    for e in (snapshots or [total]):
        trainer.fit(e)
        if snapshots:
            snaps.append((f"epoch {e}", trainer.model.state_dict()))
        log(f"  trained to epoch {e} ({time.perf_counter() - t0:.0f} s)")
    trainer.fit(total)
    xv, mv, lv = trainer.val_data
    r = evaluate(trainer.model, xv, mv, lv)
    for f in glob.glob(os.path.join(out, "*")):
        os.remove(f)
    os.rmdir(out)
    note = (f"Demo model: npunet's '{name}' preset trained for {total} epochs on 24 synthetic touching-cell images "
            f"{size}x{size} (held-out Dice {r['dice']:.3f}); not a fully trained model.")
    return trainer.model, trainer.input_range, (xv, mv, lv), snaps, note


def _run_snapshots(path, model, meta):
    """Other checkpoints of the same model in the run folder, by epoch: [(label, state_dict)] when
    there are at least two, else None."""
    from ..io import load_npz
    from .train import read_meta
    found = []
    for f in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(path)), "*.npz"))):
        try:
            d = load_npz(f)
            m = read_meta(d, f)
        except (OSError, ValueError, KeyError):
            continue
        if m["architecture"] == meta["architecture"] and m["model_config"] == meta["model_config"]:
            found.append((m["epoch"], f, {k[6:]: v for k, v in d.items() if k.startswith("model/")}))
    if len(found) < 2:
        return None
    found.sort(key=lambda t: (t[0], t[1]))
    return [(f"epoch {e} ({os.path.basename(f)})", sd) for e, f, sd in found]


def run(args):
    from ..data.inference import fit_range
    from ..viz.explain import explain
    log = print
    snaps = _epochs_list(args.epochs_snapshots) if args.epochs_snapshots else []
    if args.image != "synthetic" and not os.path.isfile(args.image):   # before any training
        _fail(f"npunet explain: --image '{args.image}' is not a file (give an image, or 'synthetic')")
    if args.mask and not os.path.isfile(args.mask):
        _fail(f"npunet explain: --mask '{args.mask}' is not a file")
    if args.epochs < 1 or args.size < 16:
        _fail(f"npunet explain: --epochs must be >= 1 and --size >= 16, got {args.epochs} and {args.size}")
    val = None
    if args.checkpoint:
        from .train import load_model
        try:
            model, meta = load_model(args.checkpoint)
        except (OSError, ValueError, KeyError) as e:
            _fail(f"npunet explain: {e}")
        if snaps:
            _fail("npunet explain: --epochs-snapshots trains a demo model (--model); with --checkpoint the other "
                  "checkpoints in the run folder make the training slider")
        snapshots = _run_snapshots(args.checkpoint, model, meta)
        in_range = meta.get("input_range") or (0.0, 1.0)
        note = f"Checkpoint {os.path.basename(args.checkpoint)}, epoch {meta.get('epoch')}."
        size = (meta.get("config") or {}).get("size", 128)
    else:
        log(f"npunet explain: training a demo '{args.model}' briefly on synthetic cells ...")
        model, in_range, val, snapshots, note = _demo_model(args.model, args.epochs, snaps, args.size, args.seed, log)
        size = args.size
    mask = labels = None
    if args.image == "synthetic":
        if val is not None:
            x, mask, labels = val[0][0], val[1][0], val[2][0]
        else:
            from ..data import make_cells
            xs, ls, ms = make_cells(1, size, seed=args.seed + 1000)
            x, mask, labels = xs[0], ms[0], ls[0]
        note += " Image: a held-out synthetic cell image with its ground truth."
    else:
        from ..data.files import DataError, read_image
        from ..data.inference import _fit_channels
        from ..data.normalize import normalize
        notes = set()
        try:
            img = _fit_channels(read_image(args.image, notes)[0], model.in_channels, notes, args.image)
        except DataError as e:
            _fail(f"npunet explain: {e}")
        norm = getattr(model, "normalization", None)
        # the run's recorded normalisation, as predict applies it; older checkpoints and the demo models
        # map the image's range onto the training images' typical range
        x = normalize(img, norm) if norm is not None else fit_range(img, *in_range).astype(np.float32)
        note += f" Image: {os.path.basename(args.image)}" + (f" ({'; '.join(sorted(notes))})." if notes else ".")
    if args.mask:
        mask, labels = _read_mask(args.mask, x.shape[-2:])
    t0 = time.perf_counter()
    try:
        r = explain(model, np.asarray(x, model.dtype), args.out, mask=mask, labels=labels, snapshots=snapshots,
                    note=note)
    except (TypeError, ValueError) as e:
        _fail(f"npunet explain: {e}")
    except OSError as e:
        _fail(f"npunet explain: cannot write '{args.out}' ({e.strerror})")
    log(f"wrote {args.out}: {r['bytes'] / 1e6:.1f} MB, {len(r['blocks'])} blocks ({time.perf_counter() - t0:.0f} s); "
        f"open it in any browser")


def add_command(sub):
    e = sub.add_parser("explain", help="write the U-Net Explainer: one HTML page to click through a model's "
                                       "forward and backward pass")
    src = e.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", metavar="FILE", help="a checkpoint.npz written by npunet train / demo")
    src.add_argument("--model", choices=MODELS, help="train this demo model briefly on synthetic cells first")
    e.add_argument("--image", required=True, metavar="IMAGE",
                   help="an image file (PNG, TIFF, .npy), or 'synthetic' for a synthetic cell image with ground truth")
    e.add_argument("--mask", metavar="FILE", help="ground truth for the image: a binary mask or instance labels "
                                                  "(the labels also give the U-Net weight map)")
    e.add_argument("--out", required=True, metavar="PAGE.html", help="the page to write")
    e.add_argument("--epochs", type=int, default=4, help="--model: training epochs of the demo model")
    e.add_argument("--epochs-snapshots", metavar="E1,E2,...",
                   help="--model: keep the weights after these epochs for the page's training slider")
    e.add_argument("--size", type=int, default=128, help="--model: side of the synthetic training images")
    e.add_argument("--seed", type=int, default=0)
    e.set_defaults(func=run)
