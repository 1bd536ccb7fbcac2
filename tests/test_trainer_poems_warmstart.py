"""trainers.poems_warmstart: the exported graphs give back the exact torch weights, and they warm-start training."""
import pytest
import torch

from trainers.common import load_checkpoint
from trainers.poems import PoemsConfig, load_model, synthetic_cache, train
from trainers.poems_warmstart import main, state_from_model_dir


@pytest.fixture(scope="module")
def trained_looking(tmp_path_factory):
    """A tiny model whose every parameter is distinct, as after training: the exporter stores identical
    constants (the zero biases and unit norms of a fresh model) once, which a real model never has."""
    from export.poems import export_poems
    from tests.fixtures_poems import save_tiny_checkpoint
    folder = tmp_path_factory.mktemp("warm")
    ckpt = save_tiny_checkpoint(folder / "ckpt.pt", seed=3)
    state = load_checkpoint(ckpt)
    gen = torch.Generator().manual_seed(0)
    state["model"] = {k: v + 0.05 * torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    torch.save(state, ckpt)
    return ckpt, [export_poems(ckpt, folder / name, check_prompts=2, fused_attention=fused)
                  for name, fused in (("fused", True), ("plain", False))]


def test_weights_recovered_from_both_graph_forms_equal_the_checkpoints(trained_looking):
    ckpt, model_dirs = trained_looking
    model, _, _ = load_model(ckpt)
    want = model.state_dict()
    for model_dir in model_dirs:
        got, cfg, vocab, _ = state_from_model_dir(model_dir)
        assert set(got) == set(want)
        assert all(torch.allclose(got[k], want[k], atol=1e-6) for k in want), model_dir


def test_warm_start_continues_the_step_count_with_a_fresh_optimizer(tmp_path):
    cache = synthetic_cache(tmp_path / "data")
    common = dict(cache=str(cache), d_model=32, num_heads=4, num_encoder_layers=1, num_decoder_layers=1,
                  dim_feedforward=64, max_len=40, tokens_per_batch=128, eval_every=2, eval_batches=1,
                  checkpoint_every=2, threads=1, device="cpu")
    first = train(PoemsConfig(out=str(tmp_path / "a"), steps=2, **common))
    model, vocab, state = load_model(first)
    from trainers.poems import save_weights
    save_weights(tmp_path / "w.pt", model, vocab, state["config"], state["step"], state["tokens_seen"],
                 state["history"])
    second = train(PoemsConfig(out=str(tmp_path / "b"), steps=4, init_from=str(tmp_path / "w.pt"), **common))
    resumed = load_checkpoint(second)
    assert resumed["step"] == 4 and resumed["restart"] == 2 and resumed["tokens_seen"] > state["tokens_seen"]


def test_the_command_checks_parity_before_writing(trained_looking, tmp_path, capsys):
    main(["--model", str(trained_looking[1][0]), "--out", str(tmp_path / "w.pt"), "--dtype", "fp32"])
    assert "max |logit diff| vs ONNX" in capsys.readouterr().out
    assert load_checkpoint(tmp_path / "w.pt", expected_kind="poems-transformer-weights")["model"]


def test_a_calibrated_directory_gives_back_the_trained_weights(tiny_calibrated_poems, tmp_path, capsys):
    checkpoint, _, _, calibrated_dir = tiny_calibrated_poems
    main(["--model", str(calibrated_dir), "--out", str(tmp_path / "w.pt"), "--dtype", "fp32"])
    assert "took the calibration temperature" in capsys.readouterr().out
    got = load_checkpoint(tmp_path / "w.pt", expected_kind="poems-transformer-weights")["model"]
    want, _, _ = load_model(checkpoint)
    for name, value in want.state_dict().items():
        torch.testing.assert_close(got[name].float(), value, atol=1e-5, rtol=1e-5, msg=name)
