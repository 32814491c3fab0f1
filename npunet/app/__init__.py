"""The command-line application: ``npunet`` (cli.py: the parser and the small commands; cmd_*.py: one module
per larger command), the training config (config), training runs (runs, train), the classroom demo (demo),
cross-validation (cv), ``npunet warmup`` and the PyTorch training-script template of ``npunet export``
(export_train), the benchmarks of ``npunet bench`` (bench, recipe_em; PyTorch's twins in torch_twins,
imported only when torch imports).  The library it drives lives beside it: nn, backends, kernels, models, losses, optim,
metrics, data, viz."""
