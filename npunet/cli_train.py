"""CLI commands that need the models and data: demo, train, predict, summary."""
import json
import os

import numpy as np

from .runs import DEFAULT_TRAIN_CONFIG, build_run

def _cmd_demo(args):
    from .demo import run_demo
    r = run_demo(model=args.model, data=args.data, epochs=args.epochs, seed=args.seed, out=args.out,
                 weight_map=not args.no_weight_map, n_train=args.n_train, progress=not args.quiet)
    m = r["metrics"]
    ok = m["dice"] >= 0.9 and m.get("instance_f1", 0) >= 0.8
    print(f"demo {'reached' if ok else 'did not reach'} the classroom targets (Dice >= 0.90, instance F1 >= 0.80) "
          f"in {r['seconds']:.0f} s")


def _cmd_train(args):
    cfg = json.loads(json.dumps(DEFAULT_TRAIN_CONFIG))
    if args.config:
        try:
            with open(args.config) as f:
                user = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"npunet train: cannot read config '{args.config}': {e}") from None
        unknown = set(user) - set(cfg)
        if unknown:
            raise SystemExit(f"npunet train: unknown config keys {sorted(unknown)}; known: {sorted(cfg)}")
        cfg.update(user)
    if args.out:
        cfg["out"] = args.out
    if args.epochs:
        cfg["epochs"] = args.epochs
    trainer = build_run(cfg)
    ck = trainer.checkpoint_path
    if args.resume and os.path.exists(ck):
        trainer.load(ck)
        print(f"resumed from {ck} at epoch {trainer.epoch}, step {trainer.step}")
    trainer.fit(cfg["epochs"])
    print(f"done: checkpoint {ck}")


def _read_image(path):
    if path.endswith(".npy"):
        a = np.load(path, allow_pickle=False)
    else:
        from PIL import Image
        a = np.asarray(Image.open(path)).astype(np.float32)
        if a.ndim == 3:
            a = a[..., :3].mean(axis=-1)
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6)
    a = np.asarray(a, np.float32)
    return a[None] if a.ndim == 2 else a


def _cmd_predict(args):
    from .train import load_model, predict_masks
    model, meta = load_model(args.checkpoint)
    img = _read_image(args.input)
    if img.shape[0] != model.in_channels:
        raise SystemExit(f"npunet predict: the model takes {model.in_channels} channel(s), '{args.input}' has {img.shape[0]}")
    mask = predict_masks(model, img[None].astype(model.dtype))[0]
    out = args.out or os.path.splitext(args.input)[0] + "_mask.png"
    from PIL import Image
    Image.fromarray((mask > 0).astype(np.uint8) * 255).save(out)
    print(f"{args.input}: {mask.shape[0]}x{mask.shape[1]}, foreground {100 * (mask > 0).mean():.1f}% -> {out}")


def _cmd_summary(args):
    from . import models
    from .models.summary import summary
    if args.model == "unet":
        m = models.UNet(args.in_channels, args.classes, args.base, depth=args.depth,
                        padding="same" if args.same else "valid")
    elif args.model == "unetpp":
        m = models.UNetPlusPlus(args.in_channels, args.classes, deep_supervision=True)
    else:
        m = models.UNet3Plus(args.in_channels, args.classes, deep_supervision=True, cgm=True)
    size = args.size or (572 if args.model == "unet" else 256)
    try:
        summary(m, (1, args.in_channels, size, size))
    except ValueError as e:
        raise SystemExit(f"npunet summary: {e}") from None


def add_commands(sub):
    d = sub.add_parser("demo", help="the classroom demo: train a small U-Net on touching cells in ~2 minutes")
    d.add_argument("--model", choices=["unet", "unetpp", "unet3plus"], default="unet")
    d.add_argument("--data", choices=["synthetic", "nuclei"], default="synthetic",
                   help="synthetic touching cells (default) or the DSB 2018 nuclei image shipped with npunet")
    d.add_argument("--epochs", type=int, default=20)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--n-train", type=int, default=48, help="synthetic training images")
    d.add_argument("--out", default="npunet_demo_out", help="folder for figures and the checkpoint")
    d.add_argument("--no-weight-map", action="store_true", help="train without the U-Net border weight map")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=_cmd_demo)
    t = sub.add_parser("train", help="train from a JSON config (keys: see npunet.runs.DEFAULT_TRAIN_CONFIG)")
    t.add_argument("--config", help="JSON file overriding the defaults")
    t.add_argument("--out", help="run folder (checkpoint.npz is written there after every epoch)")
    t.add_argument("--epochs", type=int)
    t.add_argument("--resume", action="store_true", help="continue from the run folder's checkpoint")
    t.set_defaults(func=_cmd_train)
    p = sub.add_parser("predict", help="segment an image with a trained checkpoint")
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--input", required=True, help=".png/.tif/.jpg or .npy image")
    p.add_argument("--out", help="mask PNG to write (default: <input>_mask.png)")
    p.set_defaults(func=_cmd_predict)
    s = sub.add_parser("summary", help="print a model's block table and shape trace (no computation)")
    s.add_argument("--model", choices=["unet", "unetpp", "unet3plus"], default="unet")
    s.add_argument("--size", type=int, help="input side (default 572 for unet, 256 otherwise)")
    s.add_argument("--in-channels", type=int, default=1)
    s.add_argument("--classes", type=int, default=2)
    s.add_argument("--base", type=int, default=64)
    s.add_argument("--depth", type=int, default=4)
    s.add_argument("--same", action="store_true", help="padded convolutions (default: valid, as the paper)")
    s.set_defaults(func=_cmd_summary)
