"""The ``npunet`` command line: demo, train, predict, summary, gradcheck, bench."""
import argparse
import sys


def _cmd_bench(args):
    from . import bench
    if args.model:
        bench.bench_model(args.model, repeat=args.repeat)
    else:
        bench.bench_layers(repeat=args.repeat)


def _cmd_gradcheck(args):
    from .gradcheck_suite import run_suite
    ok = run_suite(verbose=True)
    sys.exit(0 if ok else 1)


def build_parser():
    p = argparse.ArgumentParser(prog="npunet", description="U-Net family in NumPy with hand-written backprop.")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time the U-Net layers (or a whole model step) against this machine's GEMM rate")
    b.add_argument("--model", choices=["unet"], help="time whole training steps of a model instead of layers")
    b.add_argument("--repeat", type=int, default=3, help="timed repetitions (best is reported)")
    b.set_defaults(func=_cmd_bench)
    g = sub.add_parser("gradcheck", help="finite-difference check of every layer's backward in float64")
    g.set_defaults(func=_cmd_gradcheck)
    from .cli_train import add_commands
    add_commands(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
