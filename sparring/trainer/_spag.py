"""SPAG's offline policy loss (Cheng et al. 2024, DESIGN §3.4) as a transformers `Trainer`.

Each sample is one trained assistant turn. Its score is the sequence-average log-likelihood of
the target tokens, under the policy being trained (``logp``) and under the reference, the model
that played the episodes (``ref``). The reference is fixed, so its scores are computed once
before training (`reference_logps`, like TRL DPO's ``precompute_ref_log_probs``) and travel as a
dataset column: no second model copy is ever held.

The SPAG authors' ``OfflineWeightedPolicyTrainer`` (Linear95/SPAG, ``trainers.py``) was checked
for the details the formula leaves open, and this module follows it:

- the advantage ``A = reward - kl_coeff * (logp - ref)`` is NOT detached: the KL part of ``A``
  carries gradient too;
- the policy term is divided by the number of game samples in the batch and the SFT term by the
  number of SFT samples in the batch (means over counts, not over weight sums);
- the SFT term is the NLL of the sequence-average log-likelihood, scaled by ``sft_coeff``.

One departure: the authors multiply the already-reduced batch loss by the batch's mean weight
(``(total_loss * weights).mean()`` on a scalar), which mixes the weights of all rows into every
term; here each row's ``weight`` multiplies its own term, which is what the weights are for
(each role carries half of the learning in expectation).
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import torch
from transformers import Trainer

from ..agents.engine._base import encode_chat

IGNORE = -100


def spag_loss(
    logp: torch.Tensor,
    ref_logp: torch.Tensor,
    reward: torch.Tensor,
    weight: torch.Tensor,
    is_sft: torch.Tensor,
    kl_coeff: float = 0.2,
    clip_range: float | None = 0.2,
    sft_coeff: float = 0.5,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """SPAG's offline policy loss on one batch of per-sample scores.

    For game samples: ``A = reward - kl_coeff*(logp-ref)``, ``ratio = exp(logp-ref)``,
    ``loss_i = -min(A*ratio, A*clip(ratio, 1-c, 1+c))``; the policy term is
    ``sum(weight_i * loss_i) / n_game``. For SFT samples the term is ``sum(weight_j * -logp_j) / n_sft``.
    The loss is ``policy + sft_coeff * sft``; a batch without game (SFT) samples has a zero policy (SFT) term.

    Args:
        logp (`torch.Tensor`, shape ``[B]``): sequence-average target log-likelihood under the policy.
        ref_logp (`torch.Tensor`, ``[B]``): the same under the reference (no gradient).
        reward (`torch.Tensor`, ``[B]``): the row's reward (SPAG: the winner's normalised turn reward).
        weight (`torch.Tensor`, ``[B]``): the row's weight (SPAG: role balance; 1 for SFT rows).
        is_sft (`torch.Tensor`, ``[B]``, bool or 0/1): which rows are general SFT data.
        kl_coeff (`float`, defaults to 0.2): the KL penalty inside the advantage.
        clip_range (`float | None`, defaults to 0.2): ratio clip; ``None`` or 0 turns clipping off.
        sft_coeff (`float`, defaults to 0.5): weight of the SFT NLL.

    Returns:
        `(loss, stats)`: the scalar loss and detached statistics (``policy``, ``sft``, ``kl``,
        ``ratio``, ``clipped``: the share of game samples whose ratio left the clip range).

    Example:
        >>> z = torch.zeros(2)
        >>> spag_loss(z, z, torch.tensor([1.0, 0.5]), torch.ones(2), torch.tensor([False, False]))[0]
        tensor(-0.7500)
    """
    sft = is_sft.bool()
    game = ~sft
    n_game, n_sft = game.sum(), sft.sum()
    log_ratio = logp - ref_logp
    ratio = log_ratio.exp()
    advantage = reward - kl_coeff * log_ratio
    surrogate = advantage * ratio
    if clip_range:
        surrogate = torch.minimum(surrogate, advantage * ratio.clamp(1 - clip_range, 1 + clip_range))
    per_sample = -surrogate * weight
    zero = logp.new_zeros(())
    policy = (per_sample * game).sum() / n_game if n_game > 0 else zero
    sft_nll = (-logp * weight * sft).sum() / n_sft if n_sft > 0 else zero
    loss = policy + sft_coeff * sft_nll
    with torch.no_grad():
        denominator = n_game.clamp(min=1)
        clipped = ((ratio - 1).abs() > clip_range) if clip_range else torch.zeros_like(game)
        stats = {
            "policy": policy.detach(),
            "sft": sft_nll.detach(),
            "kl": (log_ratio * game).sum() / denominator,
            "ratio": (ratio * game).sum() / denominator,
            "clipped": (clipped & game).sum() / denominator,
        }
    return loss, stats


def sequence_logps(outputs) -> torch.Tensor:
    """Per-sample average log-likelihood of the labelled tokens, from a fused-LM-head forward."""
    return outputs.log_probs.sum(-1) / outputs.label_mask.sum(-1).clamp(min=1)


def tokenize_turn(tokenizer, messages: list[dict], max_length: int) -> dict[str, list[int]]:
    """Token ids of one sample: the chat-templated context, then the target turn + EOS (the labels).

    Args:
        tokenizer: a tokenizer with a chat template.
        messages (`list[dict]`): the conversation; the last message is the target.
        max_length (`int`): tokens at most; the context is cut from the left, then the target from the right.

    Returns:
        ``{"input_ids": [...], "labels": [...]}`` with the context's labels set to -100.
    """
    prompt = encode_chat(tokenizer, messages[:-1])  # as the embedded engine encoded it in play
    target = tokenizer(messages[-1]["content"], add_special_tokens=False, split_special_tokens=True)["input_ids"]
    target = [*target, tokenizer.eos_token_id]
    target = target[: max_length - 1]
    prompt = prompt[len(prompt) - (max_length - len(target)):] if len(prompt) + len(target) > max_length else prompt
    return {"input_ids": prompt + target, "labels": [IGNORE] * len(prompt) + target}


class PaddingCollator:
    """Right-pads ``input_ids`` and ``labels``, builds the attention mask, and stacks float columns."""

    def __init__(self, pad_token_id: int, float_columns: tuple[str, ...] = ()):
        self.pad_token_id = pad_token_id
        self.float_columns = float_columns

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        width = max(len(row["input_ids"]) for row in rows)
        batch = {
            "input_ids": torch.full((len(rows), width), self.pad_token_id, dtype=torch.long),
            "attention_mask": torch.zeros((len(rows), width), dtype=torch.long),
            "labels": torch.full((len(rows), width), IGNORE, dtype=torch.long),
        }
        for i, row in enumerate(rows):
            n = len(row["input_ids"])
            batch["input_ids"][i, :n] = torch.tensor(row["input_ids"])
            batch["attention_mask"][i, :n] = 1
            batch["labels"][i, :n] = torch.tensor(row["labels"])
        for column in self.float_columns:
            batch[column] = torch.tensor([float(row[column]) for row in rows])
        return batch


@torch.no_grad()
def reference_logps(model, dataset, collate, batch_size: int, device) -> list[float]:
    """Score every row of a tokenized dataset once under ``model`` as it is now (the reference).

    ``model`` must carry TRL's fused LM head (`trl.trainer.utils.add_fused_lm_head`), so no
    ``[batch, seq, vocab]`` logits are built. Rows are scored in order; the model is put back in
    the mode it was in.
    """
    was_training = model.training
    model.eval()
    scores: list[float] = []
    for start in range(0, len(dataset), batch_size):
        rows = [dataset[i] for i in range(start, min(start + batch_size, len(dataset)))]
        batch = collate(rows)
        outputs = model(input_ids=batch["input_ids"].to(device), attention_mask=batch["attention_mask"].to(device),
                        labels=batch["labels"].to(device), fused_lm_head=True)
        scores.extend(sequence_logps(outputs).float().tolist())
    model.train(was_training)
    return scores


class SpagTrainer(Trainer):
    """A transformers `Trainer` whose loss is `spag_loss`.

    The train dataset holds ``input_ids``, ``labels`` (-100 on the context), ``reward``, ``weight``,
    ``is_sft`` and ``ref_logp``; build it with `tokenize_turn` and `reference_logps`, and pass
    ``remove_unused_columns=False``. The model must carry TRL's fused LM head.
    """

    def __init__(self, *args, kl_coeff: float, clip_range: float | None, sft_coeff: float, **kwargs):
        super().__init__(*args, **kwargs)
        self.kl_coeff, self.clip_range, self.sft_coeff = kl_coeff, clip_range, sft_coeff
        self.loss_is_scaled_for_ga = False  # per-micro-batch means: the Trainer divides by the accumulation steps
        self._metrics: dict[str, list[float]] = defaultdict(list)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(input_ids=inputs["input_ids"], attention_mask=inputs["attention_mask"],
                        labels=inputs["labels"], fused_lm_head=True)
        loss, stats = spag_loss(sequence_logps(outputs), inputs["ref_logp"], inputs["reward"], inputs["weight"],
                                inputs["is_sft"], self.kl_coeff, self.clip_range, self.sft_coeff)
        if model.training:
            for name, value in stats.items():
                self._metrics[name].append(self.accelerator.gather_for_metrics(value.reshape(1)).mean().item())
        return (loss, outputs) if return_outputs else loss

    def log(self, logs: dict[str, float], start_time: float | None = None) -> None:
        logs.update({name: sum(values) / len(values) for name, values in self._metrics.items() if values})
        self._metrics.clear()
        super().log(logs, start_time)


def build_spag_trainer(config, model, tokenizer, rows, staging, continuing: bool = False) -> SpagTrainer:
    """A `SpagTrainer` on dataset ``rows`` (``messages``, ``reward``, ``weight``, ``type``) with the config's settings.

    Tokenizes every row with `tokenize_turn`, then scores it once under the model as loaded (the
    reference: the policy that played the episodes) before any update, so ``continuing`` (the
    signature every trainer of `TRAINERS` shares) changes nothing here.
    """
    from transformers import TrainingArguments
    from trl.trainer.utils import add_fused_lm_head

    from peft import PeftModel

    add_fused_lm_head(model.get_base_model() if isinstance(model, PeftModel) else model)

    def encode(row):
        return {**tokenize_turn(tokenizer, row["messages"], config.max_length), "is_sft": float(row["type"] == "sft"),
                "reward": float(row["reward"]), "weight": float(row["weight"])}

    dataset = rows.map(encode, remove_columns=rows.column_names)
    args = TrainingArguments(**config.trainer_kwargs(staging), remove_unused_columns=False, label_names=["labels"])
    collate = PaddingCollator(tokenizer.pad_token_id, ("reward", "weight", "is_sft", "ref_logp"))
    scores = reference_logps(model.to(args.device), dataset, PaddingCollator(tokenizer.pad_token_id),
                             config.batch_size, args.device)
    dataset = dataset.add_column("ref_logp", scores)
    return SpagTrainer(model=model, args=args, train_dataset=dataset, data_collator=collate,
                       processing_class=tokenizer, kl_coeff=config.kl_coeff, clip_range=config.clip_range,
                       sft_coeff=config.sft_coeff)
