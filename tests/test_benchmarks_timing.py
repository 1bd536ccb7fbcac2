"""benchmarks.timing: repeated calls with warm-up, the summary they give, peak memory and the CPU's kernel flags."""
from pathlib import Path

from benchmarks.timing import KERNEL_FLAGS, cpu_info, peak_rss_mb, time_ms


def test_time_ms_warms_up_then_times_each_repeat():
    calls = []
    stats = time_ms(lambda: calls.append(1), repeats=5, warmup=3)
    assert len(calls) == 8
    assert set(stats) == {"median_ms", "p90_ms", "repeats"} and stats["repeats"] == 5
    assert 0 <= stats["median_ms"] <= stats["p90_ms"]
    calls.clear()
    time_ms(lambda: calls.append(1), repeats=1, warmup=0)
    assert len(calls) == 1


def test_peak_rss_is_in_megabytes():
    assert 1.0 < peak_rss_mb() < 1e6                                   # ru_maxrss (KB) / 1024: tens of MB here


def test_cpu_info_reports_the_kernel_flags_present_in_their_order():
    info = cpu_info()
    assert isinstance(info["model"], str)
    assert info["flags"] == [f for f in KERNEL_FLAGS if f in info["flags"]]
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        flags = set(next((ln.split(":", 1)[1].split() for ln in cpuinfo.read_text().splitlines()
                          if ln.startswith("flags")), []))
        assert info["flags"] == [f for f in KERNEL_FLAGS if f in flags]


def test_time_interleaved_alternates_the_functions_and_reverses_each_round():
    from benchmarks.timing import time_interleaved
    calls = []
    stats = time_interleaved({"a": lambda: calls.append("a"), "b": lambda: calls.append("b")}, repeats=4, warmup=1)
    assert calls == ["a", "b"] + ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert set(stats) == {"a", "b"} and all(s["repeats"] == 4 and s["median_ms"] >= 0 for s in stats.values())
