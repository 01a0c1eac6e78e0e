"""Which CPU code path llama.cpp may take on this machine, decided once at start-up.

Two things can take a server down before the first answer: a build that uses instructions the CPU lacks (a wheel
built with `-march=native` on another machine: SIGILL), and a code path known to crash on a CPU that has the
feature (ggml's AMX kernels, reached through the "extra buffer types" that repack weights at load: a segfault on
the first multi-token prompt on Sapphire Rapids). The first is refused with a message that says how to reinstall;
the second is switched off through `llama_model_params.use_extra_bufts` unless the operator opts in
(`allow_amx: true`).

The build's features come from `llama_print_system_info()` ("CPU : SSE3 = 1 | AVX2 = 1 | AMX_INT8 = 1 | …"), the
host's from /proc/cpuinfo. Both parsers are pure functions, so the decision is tested on any machine.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass, field

# ggml's feature names → the Linux cpuinfo flag a CPU must have to run code built with them.
_NEEDS: dict[str, str] = {
    "SSE3": "pni",
    "SSSE3": "ssse3",
    "AVX": "avx",
    "AVX2": "avx2",
    "F16C": "f16c",
    "FMA": "fma",
    "BMI2": "bmi2",
    "AVX_VNNI": "avx_vnni",
    "AVX512": "avx512f",
    "AVX512_VBMI": "avx512vbmi",
    "AVX512_VNNI": "avx512_vnni",
    "AVX512_BF16": "avx512_bf16",
    "AMX_INT8": "amx_int8",
}
# The widest SIMD path first: what the start-up line and /readyz call the chosen path.
_PATHS = ("AMX_INT8", "AVX512_BF16", "AVX512_VNNI", "AVX512", "AVX_VNNI", "AVX2", "AVX", "SSSE3", "SSE3")
_X86 = {"x86_64", "amd64", "i686", "i386"}


@dataclass(frozen=True, slots=True)
class CpuPlan:
    """The decision: which path the build runs, whether extra buffer types (AMX, repack) may be used, and why."""

    host: str  # CPU model name
    build: tuple[str, ...]  # instruction-set features the llama.cpp build was compiled with
    path: str  # the widest of them, e.g. "AVX2"
    use_extra_bufts: bool
    host_amx: bool
    refusal: str | None = None  # set when the build cannot run here at all
    notes: tuple[str, ...] = field(default=())

    def as_dict(self) -> dict[str, object]:
        return {
            "host": self.host,
            "build": list(self.build),
            "path": self.path,
            "host_amx": self.host_amx,
            "extra_buffer_types": self.use_extra_bufts,
            "notes": list(self.notes),
        }

    def line(self) -> str:
        extra = "on" if self.use_extra_bufts else "off"
        return f"llama.cpp CPU path {self.path} (build: {' '.join(self.build) or '-'}; extra buffer types {extra})"


def parse_build_features(system_info: str) -> tuple[str, ...]:
    """The ISA features a llama.cpp build reports as enabled (`NAME = 1`), in ggml's spelling."""
    found = re.findall(r"\b([A-Z0-9_]+) = 1\b", system_info)
    return tuple(name for name in dict.fromkeys(found) if name in _NEEDS)


def parse_cpuinfo(text: str) -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first processor in /proc/cpuinfo."""
    model, flags = "", frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key == "flags" and not flags:
            flags = frozenset(value.split())
        if model and flags:
            break
    return model, flags


def plan(build: tuple[str, ...], host_model: str, host_flags: frozenset[str] | None, allow_amx: bool) -> CpuPlan:
    """Decide the CPU path. `host_flags` None: not an x86 Linux host, nothing to check against."""
    path = next((p for p in _PATHS if p in build), "scalar")
    if host_flags is None:
        return CpuPlan(host_model, build, path, use_extra_bufts=True, host_amx=False)
    missing = [f for f in build if _NEEDS[f] not in host_flags]
    host_amx = "amx_int8" in host_flags and "amx_tile" in host_flags
    if missing:
        refusal = (
            f"this llama.cpp build uses {', '.join(missing)}, which this CPU ({host_model or 'unknown'}) lacks: it "
            "would die with an illegal instruction. Reinstall the portable build: bash scripts/install.sh '.[local]'"
        )
        return CpuPlan(host_model, build, path, False, host_amx, refusal=refusal)
    notes: list[str] = []
    use_extra = True
    if host_amx and not allow_amx:
        # The AMX kernels live behind the extra buffer types; off, the weights stay in plain CPU buffers.
        use_extra = False
        notes.append("AMX CPU: extra buffer types off (ggml's AMX path is known to crash; allow_amx: true opts in)")
    return CpuPlan(host_model, build, path, use_extra, host_amx, notes=tuple(notes))


def detect(system_info: str, allow_amx: bool) -> CpuPlan:
    """The plan for this machine and the loaded llama.cpp build."""
    build = parse_build_features(system_info)
    if platform.machine().lower() not in _X86:
        return plan(build, platform.processor() or platform.machine(), None, allow_amx)
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            model, flags = parse_cpuinfo(f.read())
    except OSError:
        return plan(build, platform.processor(), None, allow_amx)
    return plan(build, model, flags or None, allow_amx)
