"""GPU check (for a session lent the GPU machine): issue #5's 8-bit targets on CUDA.

    python benchmarks/gpu/eightbit_step_time.py

Runs ``benchmarks/eightbit_step_time.py`` on ``cuda`` with 8 x 25M parameters (200M), all
contenders interleaved in one run: torch's fused AdamW, our fused AdamW with fp32, bf16 and
8-bit state (on CUDA the whole fused step, look-ups included, is one compiled pass), 8-bit
AdaBelief, and bitsandbytes' CUDA AdamW8bit. On the CPU the 8-bit step is bound by arithmetic
and cannot match the bandwidth-bound fp32 step (docs/performance.md); on a GPU both are bound
by memory traffic (16 against 28 bytes per parameter), which is where "8-bit no slower than
fp32" can be checked. The first step of each stochopt optimizer compiles Triton kernels (tens
of seconds). No test depends on this script.
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from eightbit_step_time import main

if __name__ == "__main__":
    if not torch.cuda.is_available():
        sys.exit("benchmarks/gpu/eightbit_step_time.py needs a CUDA device; this machine has none")
    main(["--device", "cuda", "--size", "25000000", "--rounds", "30", *sys.argv[1:]])
