"""The machine a benchmark ran on, printed with every figure: CPU model, the vector extensions that
decide which kernels run, any kernel restriction, and the process's peak memory.

No torch here: the ONNX Runtime measurements of ``deployment.py`` run without it. Scripts that
use PyTorch add its kernel level and threads (:func:`torch_description`).
"""

from __future__ import annotations

import os
import platform
from typing import Any, Dict

# the extensions that change CPU speed most: fp32 FMA width, int8 dot products, bf16 and AMX tiles
VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
# environment variables that restrict PyTorch's kernels to a lower instruction set (e.g. AVX2)
RESTRICTIONS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")


def cpu_description() -> Dict[str, Any]:
    """CPU model, its vector flags among :data:`VECTOR_FLAGS`, core count and any restriction."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                elif line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "flags": [flag for flag in VECTOR_FLAGS if flag in flags],
        "cores": os.cpu_count(),
        "restricted_to": {name: os.environ[name] for name in RESTRICTIONS if name in os.environ},
    }


def torch_description() -> Dict[str, Any]:
    """:func:`cpu_description` plus PyTorch's version, kernel level and thread count."""
    import torch

    return {
        **cpu_description(),
        "torch": torch.__version__,
        "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "threads": torch.get_num_threads(),
    }


def peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``), MiB. Linux only."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("VmHWM not found in /proc/self/status (Linux only)")
