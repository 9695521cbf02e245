"""Which integer instructions this CPU has, as far as onnxruntime's int8 kernels care.

On x86-64, onnxruntime fuses Q/DQ pairs into ``QLinearConv``/``QGemm``/``QLinearMatMul`` whose
uint8×int8 kernels use ``vpmaddubsw`` on CPUs without VNNI (AVX2, AVX-512BW): it adds two
uint8·int8 products into a *saturating* int16, so the same QDQ file can give other numbers
there than on a CPU with VNNI (``vpdpbusd`` accumulates in int32) or on ARM (``sdot``/``udot``).
:func:`cpu_features` says which case this machine is.

Detection reads the ``flags`` line of ``/proc/cpuinfo`` on Linux (``avx512_vnni``, ``avx_vnni``,
``amx_int8``, ``avx2``, ``avx512bw``; ``Features`` with ``asimddp`` on ARM). Elsewhere (macOS,
Windows) there is no file to read: x86-64 is reported as ``vnni=None`` ("unknown", treated as
"may saturate"), ARM as not saturating (every 64-bit ARM int8 kernel accumulates in int32).
"""

from __future__ import annotations

import platform
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["CpuFeatures", "cpu_features", "parse_cpuinfo"]

_VNNI_FLAGS = ("avx512_vnni", "avx_vnni", "amx_int8")
_ISA_ORDER = ("amx_int8", "avx512_vnni", "avx_vnni", "avx512bw", "avx2", "sse4_1", "asimddp", "asimd")


@dataclass(frozen=True)
class CpuFeatures:
    """``vnni``: True/False when known, None when it could not be read (x86 without /proc/cpuinfo).
    ``u8s8_saturates``: onnxruntime's uint8×int8 kernels may saturate here (x86 without VNNI, or
    unknown). ``isa``: the best integer instruction set found (e.g. 'avx2', 'avx512_vnni')."""

    arch: str
    isa: str
    vnni: bool | None
    u8s8_saturates: bool
    model_name: str = ""
    source: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        """One line for people: 'x86_64, AVX2 without VNNI (uint8×int8 kernels may saturate)'."""
        if self.vnni is None and self.arch in ("x86_64", "amd64"):
            what = "VNNI unknown"
        elif self.arch in ("x86_64", "amd64"):
            what = f"{self.isa.upper()} {'with' if self.vnni else 'without'} VNNI"
        else:
            what = self.isa
        tail = " (onnxruntime's uint8×int8 kernels may saturate)" if self.u8s8_saturates else ""
        name = f" — {self.model_name}" if self.model_name else ""
        return f"{self.arch}, {what}{tail}{name}"


def _norm_arch(machine: str) -> str:
    m = machine.lower()
    return {"amd64": "x86_64", "x64": "x86_64", "arm64": "aarch64"}.get(m, m)


def parse_cpuinfo(text: str, machine: str | None = None) -> CpuFeatures:
    """Features from the text of ``/proc/cpuinfo`` (the first processor's flags are enough:
    Linux lists the same flags for every core of one machine)."""
    flags: set[str] = set()
    model_name = ""
    for line in text.splitlines():
        key, sep, value = line.partition(":")
        if not sep:
            continue
        key = key.strip().lower()
        if key in ("flags", "features") and not flags:
            flags = set(value.split())
        elif key in ("model name", "cpu model", "hardware") and not model_name:
            model_name = value.strip()
    arch = _norm_arch(machine or platform.machine())
    if not arch:
        arch = "aarch64" if "asimd" in flags else "x86_64" if "sse2" in flags else "unknown"
    isa = next((f for f in _ISA_ORDER if f in flags), "unknown")
    if arch in ("x86_64", "i686", "i386"):
        vnni: bool | None = any(f in flags for f in _VNNI_FLAGS) if flags else None
        saturates = vnni is not True
    else:
        vnni = False
        saturates = False
    return CpuFeatures(arch, isa, vnni, saturates, model_name, "/proc/cpuinfo" if flags else "unknown")


@lru_cache(maxsize=1)
def cpu_features() -> CpuFeatures:
    """This machine's features (read once per process)."""
    machine = platform.machine()
    path = Path("/proc/cpuinfo")
    try:
        text = path.read_text(errors="replace") if path.is_file() else ""
    except OSError:
        text = ""
    if text:
        return parse_cpuinfo(text, machine)
    arch = _norm_arch(machine)
    if arch in ("aarch64", "arm64"):
        return CpuFeatures(arch, "asimd", False, False, platform.processor(), "platform")
    return CpuFeatures(arch or "unknown", "unknown", None, arch in ("x86_64", "i686", "i386", ""),
                       platform.processor(), "platform (no /proc/cpuinfo: VNNI unknown)")
