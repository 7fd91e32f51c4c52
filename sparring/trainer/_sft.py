"""Supervised fine-tuning on the trained assistant turns with TRL's `SFTTrainer`, optionally with SPAG's KL term.

Rows become conversational prompt/completion pairs (``prompt = messages[:-1]``,
``completion = [messages[-1]]``) so the loss covers the trained turn only. With ``kl_coeff > 0``
the loss is SPAG's imitation objective (Linear95/SPAG ``SFTWeightedWithKLTrainer``):
``NLL + kl_coeff * mean_i exp(logp_i) * (logp_i - ref_i)``, a Monte-Carlo KL estimate on the
sequence-average target log-likelihoods. The reference is the model before training: with a
fresh LoRA adapter, the same model with the adapter disabled; when continuing an adapter or
training all weights, scores computed once before training. Never a second model copy.
"""

from __future__ import annotations

from pathlib import Path

import torch
from trl import SFTConfig, SFTTrainer

from ._config import TrainConfig
from ._spag import reference_logps, sequence_logps

REF = "ref_logp"


def to_prompt_completion(rows):
    """Map dataset rows (``messages`` with the trained turn last) to conversational prompt/completion rows."""
    return rows.map(lambda row: {"prompt": row["messages"][:-1], "completion": [row["messages"][-1]]},
                    remove_columns=rows.column_names)


class _WithReference:
    """Wraps a collator: the rows' precomputed reference scores become a ``ref_logp`` tensor."""

    def __init__(self, inner):
        self.inner = inner

    def __call__(self, rows):
        scores = [row.pop(REF) for row in rows]
        batch = self.inner(rows)
        batch[REF] = torch.tensor(scores)
        return batch


class KLSFTTrainer(SFTTrainer):
    """`SFTTrainer` plus SPAG's imitation KL term to a fixed reference.

    Args:
        kl_coeff (`float`): weight of the KL term; 0 gives TRL's plain SFT loss.
        precompute_reference (`bool`): score the reference once before training (when the model
            is not a fresh adapter on a bare base); otherwise the reference is the model with its
            adapter disabled, scored on each batch under ``no_grad``.
    """

    def __init__(self, *args, kl_coeff: float = 0.0, precompute_reference: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.kl_coeff = kl_coeff
        self.precomputed = kl_coeff > 0 and precompute_reference
        if self.precomputed:
            scores = reference_logps(self.model, self.train_dataset, self.data_collator,
                                     self.args.per_device_train_batch_size, self.args.device)
            self.train_dataset = self.train_dataset.add_column(REF, scores)
            self.data_collator = _WithReference(self.data_collator)

    def _set_signature_columns_if_needed(self):
        super()._set_signature_columns_if_needed()
        if self.precomputed and REF not in self._signature_columns:
            self._signature_columns = [*self._signature_columns, REF]

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.kl_coeff == 0:
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
        mode = "train" if self.model.training else "eval"
        reference = inputs.pop(REF, None)
        inputs["use_cache"] = False
        outputs = model(**inputs, fused_lm_head=True)
        tokens = outputs.label_mask.sum() if num_items_in_batch is None else num_items_in_batch
        loss = -outputs.log_probs.sum() / torch.as_tensor(tokens).clamp(min=1)
        if self.args.average_tokens_across_devices and num_items_in_batch is not None:
            loss = loss * self.accelerator.num_processes
        logp = sequence_logps(outputs)
        if reference is None:
            unwrapped = self.accelerator.unwrap_model(model)
            with torch.no_grad(), unwrapped.disable_adapter():
                reference = sequence_logps(unwrapped(**inputs, fused_lm_head=True))
        kl = (logp.exp() * (logp - reference)).mean()
        # The NLL above is already scaled for gradient accumulation through `num_items_in_batch`; the KL is a mean.
        steps = self.current_gradient_accumulation_steps if num_items_in_batch is not None else 1
        loss = loss + self.kl_coeff * kl / steps
        gather = self.accelerator.gather_for_metrics
        valid = gather(outputs.label_mask.sum()).sum().clamp(min=1)
        self._metrics[mode]["kl"].append(gather(kl.detach().reshape(1)).mean().item())
        self._metrics[mode]["entropy"].append((gather(outputs.entropy.detach().sum()).sum() / valid).item())
        self._metrics[mode]["mean_token_accuracy"].append((gather(outputs.is_top1.sum()).sum() / valid).item())
        return (loss, outputs) if return_outputs else loss


def build_sft_trainer(config: TrainConfig, model, tokenizer, rows, staging: Path, continuing: bool) -> KLSFTTrainer:
    """An SFT trainer (kinds ``sft`` and ``saie``) on ``rows`` with the config's settings.

    Args:
        config (`TrainConfig`): the run's settings.
        model: the model from `load_for_training` (a PEFT model unless ``full``).
        tokenizer: its tokenizer.
        rows (`datasets.Dataset`): rows with ``messages``.
        staging (`Path`): the trainer's output directory.
        continuing (`bool`): the model continues an adapter (the reference is then precomputed).
    """
    args = SFTConfig(**config.trainer_kwargs(staging), max_length=config.max_length, completion_only_loss=True,
                     packing=False, dataset_num_proc=None)
    return KLSFTTrainer(model=model, args=args, train_dataset=to_prompt_completion(rows), processing_class=tokenizer,
                        kl_coeff=config.kl_coeff, precompute_reference=continuing or config.full)
