"""benchmarks.train_speed: the trainer's step timed per mode on a tiny synthetic corpus, and its report."""
import pytest

torch = pytest.importorskip("torch")

from benchmarks.train_speed import markdown, run_mode  # noqa: E402
from trainers.poems import synthetic_cache  # noqa: E402


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(synthetic_cache(tmp_path_factory.mktemp("train_speed")))


@pytest.fixture(autouse=True)
def keep_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("mode", ["fp32", "bf16"])
def test_a_mode_trains_and_reports_its_speed(cache, mode):
    row = run_mode(mode, cache, steps=3, warmup=1, threads=1, tokens_per_batch=128)
    assert row["mode"] == mode and row["steps"] == 3 and row["threads"] == 1
    assert row["steady_tokens_per_s"] > 0 and row["wall_tokens_per_s"] > 0
    assert 0 < row["median_s_per_step"] <= row["wall_s"] and row["first_step_s"] <= row["wall_s"]


def test_an_unknown_mode_is_refused(cache):
    with pytest.raises(ValueError, match="unknown mode 'int4'"):
        run_mode("int4", cache, steps=1, warmup=0, threads=1)


def test_markdown_compares_each_mode_with_fp32_at_its_thread_count():
    row = dict(steps=45, warmup=15, median_s_per_step=1.0, first_step_s=1.0, wall_s=45.0, wall_tokens_per_s=1.0)
    report = {"machine": "CPU", "torch": "2.x", "steps": 45, "warmup": 15, "rows": [
        {**row, "mode": "fp32", "threads": 2, "steady_tokens_per_s": 1000.0},
        {**row, "mode": "bf16", "threads": 2, "steady_tokens_per_s": 1500.0},
        {**row, "mode": "bf16", "threads": 1, "steady_tokens_per_s": 900.0}]}
    text = markdown(report)
    assert "| bf16 | 2 | 1500 |" in text and "| 1.50x |" in text and text.rstrip().endswith("| – |")
