"""trainers.poems_calibration: the logit temperature is fitted on training pairs and folded into the weights exactly."""
import pytest

torch = pytest.importorskip("torch")

from trainers.poems import (  # noqa: E402
    PairSet, PoemsConfig, evaluate, load_model, make_batches, synthetic_cache, train,
)
from trainers.poems_calibration import (  # noqa: E402
    TEMPERATURES, fit_temperature, fold_temperature, nll_at_temperatures,
)
from trainers.poems_corpus import load_corpus  # noqa: E402


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A tiny model trained (with label smoothing) until it is confident on the synthetic corpus, with that
    corpus's training batches."""
    folder = tmp_path_factory.mktemp("calib")
    cache = synthetic_cache(folder / "data")
    cfg = PoemsConfig(out=str(folder / "run"), cache=str(cache), d_model=32, num_heads=2, num_encoder_layers=1,
                      num_decoder_layers=1, dim_feedforward=64, max_len=40, tokens_per_batch=256, steps=60,
                      lr=3e-3, warmup=10, eval_every=60, eval_batches=1, checkpoint_every=60, threads=1,
                      device="cpu")
    checkpoint = train(cfg)
    arrays, _, _ = load_corpus(cache)
    pairs = PairSet(arrays, "train", cfg.max_len)
    return checkpoint, pairs, make_batches(pairs.tgt_lens, 256, seed=0)[:3]


def test_folding_scales_every_logit_by_one_over_the_temperature(trained):
    checkpoint, pairs, batches = trained
    model, _, _ = load_model(checkpoint)
    src, mask, tgt_in, _ = pairs.collate(batches[0])
    with torch.no_grad():
        before = model(src, mask, tgt_in)
        after = fold_temperature(model, 0.8)(src, mask, tgt_in)
    torch.testing.assert_close(after, before / 0.8, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="positive"):
        fold_temperature(model, 0.0)


def test_nll_at_temperature_one_is_the_trainers_own(trained):
    checkpoint, pairs, batches = trained
    model, _, _ = load_model(checkpoint)
    assert nll_at_temperatures(model, pairs, batches, (1.0,))[1.0] == pytest.approx(
        evaluate(model, pairs, batches, torch.device("cpu"))["nll"], rel=1e-5)


def test_the_fitted_temperature_follows_a_folded_one(trained):
    """Fold 0.8 into a model and the best temperature for it is the old best / 0.8 (to the grid's resolution)."""
    checkpoint, pairs, batches = trained
    model, _, _ = load_model(checkpoint)
    grid = tuple(round(0.05 + 0.01 * i, 2) for i in range(196))         # wide enough for the tiny model
    best, nll = fit_temperature(model, pairs, batches, grid)
    assert grid[0] < best < grid[-1] and min(nll.values()) <= nll[1.0]
    refit, _ = fit_temperature(fold_temperature(model, 0.8), pairs, batches, grid)
    assert refit == pytest.approx(best / 0.8, abs=0.015)


def test_the_default_grid_brackets_one():
    assert min(TEMPERATURES) < 1.0 < max(TEMPERATURES) and 1.0 in TEMPERATURES
