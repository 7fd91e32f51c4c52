"""SPAG's offline policy loss against the formula written out by hand on small tensors."""

from __future__ import annotations

import math

import pytest
import torch

from sparring.trainer._spag import PaddingCollator, sequence_logps, spag_loss, tokenize_turn


def _by_hand(logp, ref, reward, weight, sft, kl, clip, sft_coeff):
    """DESIGN §3.4, one sample at a time, in plain Python."""
    game_terms, sft_terms = [], []
    for lp, rf, r, w, s in zip(logp, ref, reward, weight, sft):
        if s:
            sft_terms.append(w * -lp)
            continue
        a = r - kl * (lp - rf)
        ratio = math.exp(lp - rf)
        surrogate = a * ratio
        if clip:
            surrogate = min(surrogate, a * min(max(ratio, 1 - clip), 1 + clip))
        game_terms.append(-surrogate * w)
    policy = sum(game_terms) / len(game_terms) if game_terms else 0.0
    return policy + sft_coeff * (sum(sft_terms) / len(sft_terms) if sft_terms else 0.0)


CASES = {
    # ratios far outside [0.8, 1.2] on both sides, positive and zero rewards
    "game": dict(logp=[-0.5, -1.0, -2.0, -0.2], ref=[-1.0, -0.9, -1.5, -0.2], reward=[0.6, 0.4, 1.0, 0.0],
                 weight=[1.5, 0.75, 1.0, 2.0], sft=[0, 0, 0, 0]),
    "mixed": dict(logp=[-0.5, -1.3, -2.0, -0.7], ref=[-0.7, -1.0, -2.1, -0.9], reward=[0.3, 0.0, 0.7, 0.0],
                  weight=[2.0, 1.0, 0.5, 1.0], sft=[0, 1, 0, 1]),
    "negative advantage": dict(logp=[-0.1, -3.0], ref=[-1.0, -1.0], reward=[0.0, 0.05], weight=[1.0, 1.0], sft=[0, 0]),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("clip", [0.2, None])
@pytest.mark.parametrize("kl", [0.0, 0.2])
def test_loss_matches_the_formula(case, clip, kl):
    values = CASES[case]
    tensors = {k: torch.tensor(v, dtype=torch.float64) for k, v in values.items()}
    loss, stats = spag_loss(tensors["logp"], tensors["ref"], tensors["reward"], tensors["weight"],
                            tensors["sft"].bool(), kl_coeff=kl, clip_range=clip, sft_coeff=0.5)
    expected = _by_hand(values["logp"], values["ref"], values["reward"], values["weight"], values["sft"], kl, clip, 0.5)
    assert loss.item() == pytest.approx(expected, rel=1e-9, abs=1e-12)
    assert set(stats) == {"policy", "sft", "kl", "ratio", "clipped"}


def test_clipping_changes_the_loss_only_outside_the_range():
    logp, ref = torch.tensor([0.0, -1.0]), torch.tensor([-1.0, -1.0])  # ratios e and 1
    reward, weight, sft = torch.tensor([1.0, 1.0]), torch.ones(2), torch.zeros(2, dtype=torch.bool)
    clipped, stats = spag_loss(logp, ref, reward, weight, sft, kl_coeff=0.0, clip_range=0.2)
    unclipped, _ = spag_loss(logp, ref, reward, weight, sft, kl_coeff=0.0, clip_range=0)
    assert clipped.item() == pytest.approx(-(1.2 + 1.0) / 2)
    assert unclipped.item() == pytest.approx(-(math.e + 1.0) / 2)
    assert stats["clipped"].item() == pytest.approx(0.5)


def test_sft_rows_add_their_weighted_nll_and_weights_scale_game_rows():
    logp = torch.tensor([-1.0, -2.0, -4.0])
    reward, sft = torch.tensor([0.5, 0.0, 0.0]), torch.tensor([False, True, True])
    loss, stats = spag_loss(logp, logp.clone(), reward, torch.tensor([3.0, 1.0, 1.0]), sft, sft_coeff=0.25)
    assert stats["policy"].item() == pytest.approx(-1.5)  # ratio 1, A = 0.5, weight 3, one game row
    assert stats["sft"].item() == pytest.approx(3.0)  # mean NLL of the two sft rows
    assert loss.item() == pytest.approx(-1.5 + 0.25 * 3.0)


def test_a_batch_of_only_sft_rows_or_only_game_rows():
    logp = torch.tensor([-1.0, -3.0])
    only_sft, _ = spag_loss(logp, logp, torch.zeros(2), torch.ones(2), torch.ones(2, dtype=torch.bool), sft_coeff=1.0)
    assert only_sft.item() == pytest.approx(2.0)
    only_game, stats = spag_loss(logp, logp, torch.ones(2), torch.ones(2), torch.zeros(2, dtype=torch.bool))
    assert only_game.item() == pytest.approx(-1.0) and stats["sft"].item() == 0.0


def test_the_advantage_carries_gradient_like_the_authors_code():
    """A is not detached (Linear95/SPAG trainers.py): d loss / d logp = -(A - kl) * ratio at ratio 1 inside the clip."""
    logp = torch.tensor([-1.0], requires_grad=True)
    loss, _ = spag_loss(logp, torch.tensor([-1.0]), torch.tensor([0.5]), torch.ones(1), torch.zeros(1, dtype=torch.bool),
                        kl_coeff=0.2, clip_range=0.2)
    loss.backward()
    assert logp.grad.item() == pytest.approx(-(0.5 - 0.2))


def test_tokenize_turn_labels_only_the_target_and_keeps_it_when_cutting():
    from transformers import AutoTokenizer

    from sparring.agents._spec import resolve_model_dir

    tokenizer = AutoTokenizer.from_pretrained(resolve_model_dir("smollm2-135m"))
    messages = [{"role": "user", "content": "word " * 200}, {"role": "assistant", "content": "A clear reply."}]
    row = tokenize_turn(tokenizer, messages, max_length=64)
    assert len(row["input_ids"]) == 64
    target = [t for t in row["labels"] if t != -100]
    assert tokenizer.decode(target) == "A clear reply." + tokenizer.eos_token
    assert row["input_ids"][-len(target):] == target
    batch = PaddingCollator(tokenizer.pad_token_id, ("reward",))([{**row, "reward": 1}, {**row, "reward": 0}])
    assert batch["input_ids"].shape == (2, 64) and batch["reward"].tolist() == [1.0, 0.0]


def test_sequence_logps_averages_over_labelled_tokens():
    class Out:
        log_probs = torch.tensor([[-1.0, -3.0, 0.0], [-2.0, 0.0, 0.0]])
        label_mask = torch.tensor([[True, True, False], [True, False, False]])

    assert sequence_logps(Out).tolist() == [-2.0, -2.0]
