"""``npunet demo``: the classroom demo from the command line (the demo itself: :mod:`npunet.app.demo`)."""
from ..models.registry import presets
from .cli import fail as _fail


def run(args):
    from .config import ConfigError
    from .demo import run_demo
    from ..io import InputError
    for flag, v in (("--epochs", args.epochs), ("--n-train", args.n_train)):
        if v < 1:  # checked before anything runs: no figure, no checkpoint, nothing reported
            _fail(f"npunet demo: {flag} must be >= 1, got {v}")
    if args.seed < 0:
        _fail(f"npunet demo: --seed must be >= 0, got {args.seed}")
    try:
        r = run_demo(model=args.model, data=args.data, epochs=args.epochs, seed=args.seed, out=args.out,
                     weight_map=not args.no_weight_map, n_train=args.n_train, progress=not args.quiet)
    except (ConfigError, InputError, OSError) as e:
        _fail(f"npunet demo: {e}")
    m = r["metrics"]
    ok = m["dice"] >= 0.9 and m.get("instance_f1", 0) >= 0.8
    print(f"demo {'reached' if ok else 'did not reach'} the classroom targets (Dice >= 0.90, instance F1 >= 0.80) "
          f"in {r['seconds']:.0f} s")


def add_command(sub):
    d = sub.add_parser("demo", help="the classroom demo: train a small U-Net on touching cells, about a minute on 2 cores")
    d.add_argument("--model", choices=list(presets()), default="unet",
                   help="U-Net, U-Net++, UNet 3+, or a U-Net with a ResNet / MobileNetV2 / EfficientNet encoder")
    d.add_argument("--data", choices=["synthetic", "nuclei"], default="synthetic",
                   help="synthetic touching cells (default) or the DSB 2018 nuclei image shipped with npunet")
    d.add_argument("--epochs", type=int, default=20)
    d.add_argument("--seed", type=int, default=0)
    d.add_argument("--n-train", type=int, default=48, help="synthetic training images")
    d.add_argument("--out", default="npunet_demo_out", help="folder for figures and the checkpoint")
    d.add_argument("--no-weight-map", action="store_true", help="train without the U-Net border weight map")
    d.add_argument("--quiet", action="store_true", help="no progress bar")
    d.set_defaults(func=run)
