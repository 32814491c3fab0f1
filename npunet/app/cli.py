"""The ``npunet`` command line: demo, train, predict, summary, gradcheck, bench, lessons, check, figures, warmup, export, explain.

The small commands are here; demo, train, cv, predict, summary and explain have a module each (cmd_*.py)
with ``add_command(sub)`` (its arguments) and ``run(args)``."""
import argparse
import sys


def _cmd_bench(args):
    from . import bench
    for flag in ("steps", "repeat", "rounds"):
        if getattr(args, flag) < 1:
            sys.exit(f"npunet bench: --{flag} must be a whole number >= 1, got {getattr(args, flag)}")
    if args.cold:
        from .bench_cold import bench_cold
        bench_cold(rounds=args.rounds)
    elif args.recipe is not None:
        bench.bench_recipe(args.recipe, steps=args.steps, rounds=args.rounds)
    elif args.model is not None:
        cases = None if not args.model or set(args.model) & {"all", "unet"} else args.model
        bench.bench_model(cases, repeat=args.repeat, rounds=args.rounds)
    else:
        bench.bench_layers(repeat=args.repeat)


def _cmd_gradcheck(args):
    from ..teach.gradcheck_suite import run_suite
    ok = run_suite(verbose=True)
    sys.exit(0 if ok else 1)


def _cmd_check(args):
    from ..teach.checker import main as check_main
    if args.timeout <= 0:
        sys.exit("npunet check: --timeout must be a positive number of seconds")
    sys.exit(check_main(args.exercise, args.file, solution=args.solution, timeout=args.timeout))


def _cmd_lessons(args):
    from ..teach import course
    if args.copy is None:
        print(course.listing())
        return
    written, kept = course.copy(args.copy, solutions=args.solutions, notebooks=not args.no_notebooks)
    print(f"copied {len(written)} files into {args.copy}" + (f" ({len(kept)} already there, kept as they are)"
                                                             if kept else ""))
    if not any(p.endswith(".ipynb") for p in written + kept) and not args.no_notebooks:
        print("  (no .ipynb: jupytext is not installed; `pip install npunet[notebooks]` adds it, or open the .py "
              "files in Jupyter/VS Code as percent-format notebooks)")
    print(f"next: cd {args.copy} && python 02_unet_2015.py --fast      then: npunet check conv2d exercises/01_conv2d.py")


def _cmd_figures(args):
    from ..teach.figures import regenerate
    sys.exit(regenerate(args.out, args.lesson, size=args.size))


def _cmd_warmup(args):
    from .warmup import main as warmup_main
    warmup_main(args)


def _cmd_export(args):
    from .export import ExportError, export_checkpoint
    try:
        paths = export_checkpoint(args.checkpoint, args.out, prune=args.prune)
    except (OSError, ValueError) as e:  # ExportError is a ValueError
        sys.exit(f"npunet export: {e}")
    print("wrote " + ", ".join(paths))
    print(f"continue training: torchrun --nproc_per_node 2 {paths[2]} --data DATA_DIR   (see {paths[3]})")


def fail(msg):
    """Stop the command with one line on stderr (exit status 1)."""
    raise SystemExit(msg)


def read_config(path, cmd="train"):
    """The JSON config file of ``npunet train`` / ``npunet cv``, or one line naming what is wrong with it."""
    from ..io import InputError, read_json
    try:
        return read_json(path, "config")
    except InputError as e:
        fail(f"npunet {cmd}: {e}")


def build_parser():
    from .. import __version__
    p = argparse.ArgumentParser(prog="npunet", description="U-Net family in NumPy with hand-written backprop.")
    p.add_argument("--version", action="version", version=f"npunet {__version__}")
    sub = p.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("bench", help="time the U-Net layers (or a whole model step) against this machine's GEMM rate")
    from .bench import ALL_CASES
    b.add_argument("--model", nargs="*", choices=["all", "unet"] + ALL_CASES, metavar="CASE",
                   help="time whole training steps, eval forwards and predict instead of layers: the named cases ("
                   + ", ".join(ALL_CASES) + "), all of them when none is named; next to PyTorch's twin when PyTorch "
                   "is importable")
    b.add_argument("--recipe", choices=["em"], help="time a whole training run (em: padded BN U-Net base 16, "
                   "4x256^2 crops, Adam, BCE) against PyTorch's, data loading and optimiser included")
    b.add_argument("--cold", action="store_true", help="time import + the first classroom training step on an "
                   "empty kernel cache, with the prefetch helper and without (and PyTorch's first step when importable)")
    b.add_argument("--steps", type=int, default=300, help="--recipe: training steps (default 300)")
    b.add_argument("--repeat", type=int, default=3, help="timed repetitions per process (best is reported)")
    b.add_argument("--rounds", type=int, default=1,
                   help="--model, --recipe, --cold: alternate the processes this many times (min and median over all)")
    b.set_defaults(func=_cmd_bench)
    g = sub.add_parser("gradcheck", help="finite-difference check of every layer's backward in float64")
    g.set_defaults(func=_cmd_gradcheck)
    from ..teach.checker import EXERCISES
    c = sub.add_parser("check", help="check an exercise of lessons/exercises/ against the reference ops",
                       description="Runs the exercise's forward and backward on small float64 cases and compares "
                       "them with npunet's reference ops; says which output or gradient is wrong, where, and why.")
    c.add_argument("exercise", help="an exercise name (" + ", ".join(EXERCISES) + "), its number, or the path "
                   "of a file named like the exercise (01_conv2d.py)")
    c.add_argument("file", nargs="?", help="the file to check against the exercise (any name); default: "
                   "lessons/exercises/NN_name.py, exercises/NN_name.py or NN_name.py here, else the installed copy")
    c.add_argument("--solution", action="store_true", help="check the teacher's solution (installed with npunet)")
    c.add_argument("--timeout", type=float, default=20.0, metavar="S",
                   help="seconds each case may take before the check stops it (default 20)")
    c.set_defaults(func=_cmd_check)
    les = sub.add_parser("lessons", help="list the lessons and exercises installed with npunet, or copy them",
                         description="Lists the lessons (number, title, run time per size) and exercises; with "
                         "--copy DIR copies the lessons and exercises (not the solutions) into DIR, with .ipynb "
                         "notebooks when jupytext is installed.  Existing files in DIR are kept.")
    les.add_argument("--copy", metavar="DIR", help="copy the lessons and exercises into DIR")
    les.add_argument("--solutions", action="store_true", help="with --copy: the solutions too (for teachers)")
    les.add_argument("--no-notebooks", action="store_true", help="with --copy: only the .py scripts")
    les.set_defaults(func=_cmd_lessons)
    f = sub.add_parser("figures", help="regenerate the README figures (runs the lessons at full size)",
                       description="Runs the lessons that draw the README's figures, at full size, writing their "
                       "figures into --out (the repository's figures/ on purpose; lessons run normally write "
                       "into ./npunet_figures/).  Full size takes tens of minutes on 2 cores; --lesson picks some.")
    f.add_argument("--out", required=True, help="folder for the figures, e.g. figures/")
    f.add_argument("--lesson", type=int, nargs="*", metavar="N", help="only these lesson numbers")
    f.add_argument("--size", choices=["full", "class", "fast"], default="full",
                   help="full (default; what the README shows) or a smaller size for a quick look")
    f.set_defaults(func=_cmd_figures)
    w = sub.add_parser("warmup", help="compile every kernel the demo and the lessons use, once per machine "
                                      "(run it before class: the first run is then as fast as the next)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=_cmd_warmup)
    e = sub.add_parser("export", help="write a checkpoint's model as standalone PyTorch (model.py, weights, a DDP "
                                      "training script)")
    e.add_argument("--checkpoint", required=True, help="an npunet checkpoint.npz")
    e.add_argument("--out", required=True, help="folder for model.py, weights.safetensors, train_ddp.py, README.md")
    e.add_argument("--prune", type=int, metavar="L", help="U-Net++: export the sub-network pruned to level L")
    e.set_defaults(func=_cmd_export)
    from . import cmd_cv, cmd_demo, cmd_explain, cmd_predict, cmd_summary, cmd_train
    for command in (cmd_demo, cmd_train, cmd_cv, cmd_predict, cmd_summary, cmd_explain):
        command.add_command(sub)
    return p


def main(argv=None):
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
