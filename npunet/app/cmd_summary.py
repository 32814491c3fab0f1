"""``npunet summary``: a model's block table and shape trace, shapes only (no weight is allocated)."""
from ..models.registry import summary_models
from .cli import fail as _fail


def run(args):
    from .. import init
    from ..models.summary import summary
    for name in ("size", "base", "depth"):
        v = getattr(args, name)
        if v is not None and v < 1:
            _fail(f"npunet summary: --{name} must be >= 1, got {v}")
    if args.in_channels < 1 or args.classes < 1:
        _fail(f"npunet summary: --in-channels and --classes must be >= 1, got {args.in_channels} and {args.classes}")
    build = summary_models()[args.model].summary  # the registry's paper-sized network
    try:
        with init.shapes_only():  # shapes only, as documented: no weight is allocated, whatever the size
            m, default_size = build(args.in_channels, args.classes, args.base, args.depth, args.same)
        size = args.size or default_size
        summary(m, (1, args.in_channels, size, size))
    except (TypeError, ValueError, OverflowError) as e:
        _fail(f"npunet summary: {e}")


def add_command(sub):
    s = sub.add_parser("summary", help="print a model's block table and shape trace (no computation)")
    s.add_argument("--model", choices=list(summary_models()), default="unet")
    s.add_argument("--size", type=int, help="input side (default 572 for unet, 256 otherwise)")
    s.add_argument("--in-channels", type=int, default=1)
    s.add_argument("--classes", type=int, default=2)
    s.add_argument("--base", type=int, help="channels of the first level (default: the model's own)")
    s.add_argument("--depth", type=int, help="levels below the first (default 4)")
    s.add_argument("--same", action="store_true", help="padded convolutions (default: valid, as the paper)")
    s.set_defaults(func=run)
