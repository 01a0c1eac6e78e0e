"""The CPU-feature guard: which llama.cpp code path may run here, decided before the first matmul."""

from __future__ import annotations

import pytest

from router.engines.cpu import detect, parse_build_features, parse_cpuinfo, plan

AVX2_BUILD = "CPU : SSE3 = 1 | SSSE3 = 1 | AVX = 1 | AVX2 = 1 | F16C = 1 | FMA = 1 | BMI2 = 1 | LLAMAFILE = 1 | "
NATIVE_SPR = AVX2_BUILD + "AVX512 = 1 | AVX512_VBMI = 1 | AVX512_VNNI = 1 | AVX512_BF16 = 1 | AMX_INT8 = 1 | "
ZEN3 = frozenset(["fpu", "sse", "sse2", "pni", "ssse3", "sse4_1", "sse4_2", "avx", "avx2", "f16c", "fma", "bmi2"])
SPR = ZEN3 | frozenset(
    ["avx512f", "avx512vbmi", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16", "avx_vnni"]
)


def test_reads_the_build_features_llama_cpp_reports() -> None:
    assert parse_build_features(AVX2_BUILD) == ("SSE3", "SSSE3", "AVX", "AVX2", "F16C", "FMA", "BMI2")
    assert "AMX_INT8" in parse_build_features(NATIVE_SPR)
    assert parse_build_features("CPU : AVX2 = 0 | LLAMAFILE = 1 |") == ()


def test_reads_cpuinfo() -> None:
    text = (
        "processor\t: 0\nmodel name\t: Intel(R) Xeon(R) Platinum 8480+\nflags\t\t: fpu avx2 amx_int8\n\nprocessor: 1\n"
    )
    assert parse_cpuinfo(text) == ("Intel(R) Xeon(R) Platinum 8480+", frozenset({"fpu", "avx2", "amx_int8"}))


def test_amx_cpu_turns_off_extra_buffer_types_unless_opted_in() -> None:
    guarded = plan(parse_build_features(NATIVE_SPR), "Xeon 8480+", SPR, allow_amx=False)
    assert guarded.host_amx and not guarded.use_extra_bufts and guarded.refusal is None
    assert guarded.path == "AMX_INT8" and "AMX" in guarded.notes[0]
    opted_in = plan(parse_build_features(NATIVE_SPR), "Xeon 8480+", SPR, allow_amx=True)
    assert opted_in.use_extra_bufts and not opted_in.notes
    # The portable build on the same CPU: no AMX code in it, but the repack buffers are still off on AMX hosts.
    portable = plan(parse_build_features(AVX2_BUILD), "Xeon 8480+", SPR, allow_amx=False)
    assert portable.path == "AVX2" and not portable.use_extra_bufts


def test_non_amx_cpu_keeps_extra_buffer_types() -> None:
    p = plan(parse_build_features(AVX2_BUILD), "AMD EPYC 7B13", ZEN3, allow_amx=False)
    assert p.use_extra_bufts and p.refusal is None and not p.host_amx and p.path == "AVX2"


def test_a_build_the_cpu_cannot_run_is_refused_with_the_fix() -> None:
    p = plan(parse_build_features(NATIVE_SPR), "AMD EPYC 7B13", ZEN3, allow_amx=False)
    assert p.refusal is not None
    assert "AVX512" in p.refusal and "AMX_INT8" in p.refusal and "scripts/install.sh" in p.refusal


def test_non_x86_hosts_are_not_checked() -> None:
    p = plan(("AVX2",), "arm", None, allow_amx=False)
    assert p.refusal is None and p.use_extra_bufts


def test_this_machine_and_the_installed_build() -> None:
    """The installed llama.cpp (built by scripts/install.sh) must be runnable here, with a named path."""
    llama_cpp = pytest.importorskip("llama_cpp")
    llama_cpp.llama_backend_init()
    info = llama_cpp.llama_print_system_info().decode()
    cpu = detect(info, allow_amx=False)
    assert cpu.refusal is None, cpu.refusal
    assert cpu.path != "scalar", info
    assert "AMX_INT8" not in cpu.build and "AVX512" not in cpu.build, "the portable build must not carry AVX-512/AMX"
    assert cpu.line().startswith("llama.cpp CPU path ")


def test_thread_candidates_are_half_and_all_the_usable_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """What config.py and deploy/router.example.yaml promise for `n_threads: null`."""
    import os

    from router.engines.llamacpp_threads import thread_candidates, usable_cores

    for cores, expected in ((1, (1,)), (2, (1, 2)), (8, (4, 8)), (9, (4, 9))):
        monkeypatch.setattr(os, "sched_getaffinity", lambda _pid, n=cores: set(range(n)))
        assert thread_candidates(usable_cores()) == expected
