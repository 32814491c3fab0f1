"""The ``npunet`` command line: demo, train, predict, summary, gradcheck, bench, check."""
import argparse
import sys


def _cmd_bench(args):
    from . import bench
    if args.model is not None:
        cases = None if not args.model or set(args.model) & {"all", "unet"} else args.model
        bench.bench_model(cases, repeat=args.repeat, rounds=args.rounds)
    else:
        bench.bench_layers(repeat=args.repeat)


def _cmd_gradcheck(args):
    from .gradcheck_suite import run_suite
    ok = run_suite(verbose=True)
    sys.exit(0 if ok else 1)


def _cmd_check(args):
    from .exercises import main as check_main
    sys.exit(check_main(args.exercise, solution=args.solution))


def _cmd_export(args):
    from .export import ExportError, export_checkpoint
    try:
        paths = export_checkpoint(args.checkpoint, args.out, prune=args.prune)
    except (OSError, ValueError) as e:  # ExportError is a ValueError
        sys.exit(f"npunet export: {e}")
    print("wrote " + ", ".join(paths))
    print(f"continue training: torchrun --nproc_per_node 2 {paths[2]} --data DATA_DIR   (see {paths[3]})")


def build_parser():
    p = argparse.ArgumentParser(prog="npunet", description="U-Net family in NumPy with hand-written backprop.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time the U-Net layers (or a whole model step) against this machine's GEMM rate")
    from .bench import MODEL_CASES
    b.add_argument("--model", nargs="*", choices=["all", "unet"] + list(MODEL_CASES), metavar="CASE",
                   help="time whole training steps instead of layers: the named cases (" + ", ".join(MODEL_CASES)
                   + "), all of them when none is named; next to PyTorch's twin when PyTorch is importable")
    b.add_argument("--repeat", type=int, default=3, help="timed repetitions per process (best is reported)")
    b.add_argument("--rounds", type=int, default=1,
                   help="--model: alternate npunet and PyTorch processes this many times (min and median over all)")
    b.set_defaults(func=_cmd_bench)
    g = sub.add_parser("gradcheck", help="finite-difference check of every layer's backward in float64")
    g.set_defaults(func=_cmd_gradcheck)
    from .exercises import EXERCISES
    c = sub.add_parser("check", help="check an exercise of lessons/exercises/ against the reference ops",
                       description="Runs the exercise's forward and backward on small float64 cases and compares "
                       "them with npunet's reference ops; says which output or gradient is wrong, where, and why.")
    c.add_argument("exercise", help="an exercise name (" + ", ".join(EXERCISES) + "), its number, or a file path")
    c.add_argument("--solution", action="store_true", help="check the teacher's solution instead")
    c.set_defaults(func=_cmd_check)
    e = sub.add_parser("export", help="write a checkpoint's model as standalone PyTorch (model.py, weights, a DDP "
                                      "training script)")
    e.add_argument("--checkpoint", required=True, help="an npunet checkpoint.npz")
    e.add_argument("--out", required=True, help="folder for model.py, weights.safetensors, train_ddp.py, README.md")
    e.add_argument("--prune", type=int, metavar="L", help="U-Net++: export the sub-network pruned to level L")
    e.set_defaults(func=_cmd_export)
    from .cli_train import add_commands
    add_commands(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
