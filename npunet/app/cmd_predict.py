"""``npunet predict``: segment image files with a trained checkpoint (the work: :mod:`npunet.data.inference`)."""
from .cli import fail as _fail


def run(args):
    from ..data.files import DataError
    from ..data.inference import expand_inputs, predict_files
    from ..io import InputError, check_out_path
    from .train import load_model
    try:
        check_out_path(args.out, "folder")  # before the checkpoint is read or anything is predicted
    except InputError as e:
        _fail(f"npunet predict: {e}")
    try:
        model, meta = load_model(args.checkpoint)
    except (OSError, ValueError) as e:
        _fail(f"npunet predict: {e}")
    fallback = None
    if meta.get("normalization") is None and meta.get("input_range"):
        fallback = meta["input_range"]  # a checkpoint from before normalisation records: the old min-max rule
    try:
        files = expand_inputs(args.input)
        predict_files(model, files, args.out, overlay_=args.overlay, probabilities=args.probabilities,
                      force=args.force, progress=not args.quiet, fallback_range=fallback)
    except (DataError, ValueError) as e:
        _fail(f"npunet predict: {e}")


def add_command(sub):
    p = sub.add_parser("predict", help="segment images, folders or globs with a trained checkpoint",
                       description="Writes OUT/<stem>.png for every input: the mask at the input's size, in the "
                       "training masks' values (binary: 0/255).  The checkpoint's normalisation is applied; large "
                       "images and valid-padding models are predicted tile by tile.")
    p.add_argument("--checkpoint", required=True, help="a run's checkpoint.npz")
    p.add_argument("--input", required=True, nargs="+", metavar="PATH",
                   help="image files (.png .tif .tiff .jpg .jpeg .bmp .npy), folders of them, or globs")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the masks (created if missing)")
    p.add_argument("--overlay", action="store_true", help="also <stem>_overlay.png: the image with the mask outlined")
    p.add_argument("--probabilities", action="store_true", help="also <stem>.npy: float32 (K, H, W) probabilities")
    p.add_argument("--force", action="store_true", help="replace outputs that already exist in DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)
