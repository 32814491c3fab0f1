"""``npunet.bench``: kept importable; the benchmarks live in ``npunet.app.bench`` (the command line's
code, outside the library's own import path) and PyTorch's twins in ``npunet.app.torch_twins``."""
from .app.bench import *  # noqa: F401,F403
from .app.bench import CONV_SET, MODEL_CASES, bench_layers, bench_model, conv_flops, copy_time, gemm_rate  # noqa: F401
