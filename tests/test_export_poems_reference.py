"""export.poems_reference: the torch no-cache step model, random prompts and the parity helpers built on them."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from export.poems_reference import (  # noqa: E402
    PROMPT_KIND_IDS, TorchNoCacheModel, compare_decoding, lockstep_logits, random_sources, step_logit_parity,
)
from genrt.contract import SOS_ID, SPECIAL_TOKENS  # noqa: E402
from trainers.poems_model import PoemTransformer, PoemTransformerConfig  # noqa: E402

VOCAB_SIZE = 24


def tiny_model(seed=0):
    torch.manual_seed(seed)
    return PoemTransformer(PoemTransformerConfig(vocab_size=VOCAB_SIZE, d_model=16, num_heads=2,
                                                 num_encoder_layers=1, num_decoder_layers=1, dim_feedforward=32,
                                                 max_len=40)).eval()


def test_random_sources_are_a_prompt_kind_then_ordinary_ids():
    sources = random_sources(VOCAB_SIZE, 50, seed=0)
    assert sources == random_sources(VOCAB_SIZE, 50, seed=0) != random_sources(VOCAB_SIZE, 50, seed=1)
    assert {s[0] for s in sources} == set(PROMPT_KIND_IDS)
    assert all(3 <= len(s) <= 9 and all(len(SPECIAL_TOKENS) <= t < VOCAB_SIZE for t in s[1:]) for s in sources)


def test_each_step_is_the_full_model_over_the_whole_prefix():
    model = tiny_model()
    ref = TorchNoCacheModel(model)
    state = ref.start([[4, 7, 8], [5, 9]], copies=2)                      # rows: a, a, b, b
    assert tuple(state.src_ids.shape) == (4, 3) and state.src_mask[2].tolist() == [1, 1, 0]
    tokens = np.full((4, 1), SOS_ID, np.int64)
    logits, state = ref.step(tokens, state)
    logits, state = ref.step(np.array([[7], [8], [9], [10]]), state)      # (4, V)
    assert state.prefix.tolist() == [[SOS_ID, 7], [SOS_ID, 8], [SOS_ID, 9], [SOS_ID, 10]]
    with torch.no_grad():
        want = model(state.src_ids, state.src_mask, torch.from_numpy(state.prefix))[:, -1]
    np.testing.assert_allclose(logits, want.numpy(), atol=1e-6)
    assert ref.reorder(state, np.array([3, 3, 0, 1])).prefix[:, 1].tolist() == [10, 10, 7, 8]


def test_lockstep_feeds_both_models_the_first_ones_greedy_tokens():
    a, b = TorchNoCacheModel(tiny_model(0)), TorchNoCacheModel(tiny_model(1))
    sources = random_sources(VOCAB_SIZE, 3, seed=2)
    steps = list(lockstep_logits(a, a, sources, steps=4))
    assert len(steps) == 4 and all(np.array_equal(la, lb) for la, lb, _ in steps)
    prefix = steps[-1][2].prefix                                          # (3, 4): <sos>, then a's argmax
    assert (prefix[:, 0] == SOS_ID).all()
    assert [prefix[:, i + 1].tolist() for i in range(3)] == [steps[i][0].argmax(1).tolist() for i in range(3)]
    assert not all(np.allclose(la, lb) for la, lb, _ in lockstep_logits(a, b, sources, steps=2))


def test_parity_helpers_find_a_model_equal_to_itself_and_not_to_another():
    model = tiny_model()
    assert step_logit_parity(model, TorchNoCacheModel(model), batches=(1, 2), steps=2) == 0.0
    assert step_logit_parity(model, TorchNoCacheModel(tiny_model(1)), batches=(1,), steps=2) > 1e-3
    same = compare_decoding(TorchNoCacheModel(model), TorchNoCacheModel(model), prompts=3, max_new=5, num_beams=2)
    assert same == {"prompts": 3, "greedy_identical": 3, "beam_identical": 3}
