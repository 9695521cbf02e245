"""CPU feature detection: what /proc/cpuinfo says about VNNI, parsed without the machine."""

from workbench.runtime.cpu import cpu_features, parse_cpuinfo

AVX2_ONLY = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B12
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 bmi2
processor\t: 1
flags\t\t: fpu vme sse sse2 ssse3 sse4_1 sse4_2 avx f16c avx2 bmi2
"""
AVX512_VNNI = "model name\t: Intel Xeon\nflags\t\t: sse2 avx2 avx512f avx512bw avx512_vnni\n"
AVX_VNNI = "model name\t: Intel Core i7-12700\nflags\t\t: sse2 avx2 avx_vnni\n"
AMX = "flags\t\t: sse2 avx2 avx512bw avx512_vnni amx_tile amx_int8\n"
ARM = "processor\t: 0\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 asimddp\nCPU part\t: 0xd0c\n"


def test_avx2_without_vnni_saturates():
    f = parse_cpuinfo(AVX2_ONLY, "x86_64")
    assert (f.arch, f.isa, f.vnni, f.u8s8_saturates) == ("x86_64", "avx2", False, True)
    assert f.model_name == "AMD EPYC 7B12"
    assert "without VNNI" in f.describe() and "saturate" in f.describe()


def test_vnni_flags_are_found():
    for text, isa in ((AVX512_VNNI, "avx512_vnni"), (AVX_VNNI, "avx_vnni"), (AMX, "amx_int8")):
        f = parse_cpuinfo(text, "AMD64")
        assert f.arch == "x86_64" and f.isa == isa and f.vnni is True and not f.u8s8_saturates
        assert "with VNNI" in f.describe()


def test_arm_does_not_saturate():
    f = parse_cpuinfo(ARM, "aarch64")
    assert f.isa == "asimddp" and f.vnni is False and not f.u8s8_saturates


def test_unknown_x86_is_treated_as_saturating():
    f = parse_cpuinfo("", "x86_64")
    assert f.vnni is None and f.u8s8_saturates and "unknown" in f.describe()


def test_this_machine_reports_something():
    f = cpu_features()
    d = f.to_dict()
    assert set(d) >= {"arch", "isa", "vnni", "u8s8_saturates"}
    assert isinstance(f.describe(), str) and f.describe()
