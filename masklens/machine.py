"""What machine something ran on, for the records of trainings and benchmarks."""

from __future__ import annotations

import platform
from pathlib import Path


def _cpuinfo(field: str) -> str | None:
    """The first CPU's value of a /proc/cpuinfo field; None where there is no such file or field."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in lines if line.split(":", 1)[0].strip() == field), None)


def cpu_name() -> str:
    """The CPU's model name, for records of where something ran."""
    return _cpuinfo("model name") or platform.processor() or "unknown"


# The x86 vector extensions that set native kernels' speed (onnxruntime picks its kernels by them), by
# their /proc/cpuinfo flag.
VECTOR_EXTENSIONS = {"avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "amx_int8": "AMX"}


def cpu_vector_extensions() -> list[str]:
    """Which of VECTOR_EXTENSIONS this CPU has (none known off Linux)."""
    flags = (_cpuinfo("flags") or "").split()
    return [name for flag, name in VECTOR_EXTENSIONS.items() if flag in flags]
