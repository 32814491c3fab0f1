"""The command-line application: the ``npunet`` commands (cli, cli_train, cli_explain), the training
config (config), training runs (runs, train), the demo, cross-validation (cv) and ``npunet warmup``.
The library it drives lives beside it: nn, backends, kernels, models, losses, optim, metrics, data, viz."""
