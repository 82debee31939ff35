"""GPU check (for a session lent the GPU machine): the fused path on CUDA.

    python benchmarks/gpu/step_time.py

Runs ``benchmarks/step_time.py`` on ``cuda`` with 8 x 25M parameters (200M; large enough that
a step is a few milliseconds on an H100 and launch overhead does not dominate), printing one
table: each optimizer's step time, its ratio to ``torch.optim.AdamW(fused=True)`` and the
fraction of the GPU's measured in-place memory bandwidth it reaches. The first step of each
stochopt optimizer compiles Triton kernels (tens of seconds). No test depends on this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from step_time import main

if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu/step_time.py needs a CUDA device; this machine has none")
    main(["--device", "cuda", "--size", "25000000", "--repeats", "50", *sys.argv[1:]])
