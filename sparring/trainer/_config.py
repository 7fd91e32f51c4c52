"""Settings of one `sparring train` run, checked before anything heavy is loaded."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..agents._spec import SPEC_FORMS, ModelSpec
from ..errors import TrackingError, TrainingError
from ..settings import setting

TRAINERS = {
    "sft": ("._sft", "build_sft_trainer"),
    "spag": ("._spag", "build_spag_trainer"),
    "saie": ("._sft", "build_sft_trainer"),
}
"""Training kind -> the module (of this package) and function that build its trainer; `_train.build_trainer`
imports it when used (it loads torch and TRL). ``train KIND`` and ``bench/train.py`` both train through it."""
KINDS = tuple(TRAINERS)
LORA_LR = 1e-4
FULL_LR = 2e-6
DEFAULT_LORA_R = 16
DEFAULT_KL = {"sft": 0.0, "spag": 0.2, "saie": 0.0}
SCHEDULERS = ("constant", "linear", "cosine")
"""Learning-rate schedules (transformers' names)."""


@dataclass
class TrainConfig:
    """What `train` does: which data, which model, which loss, and the optimiser's settings.

    Each field's help (its ``metadata["help"]``) says what it is; ``sparring train --help`` shows the
    same text for its option.

    Raises:
        `TrainingError`: a setting is out of range or two settings contradict each other.

    Example:
        >>> TrainConfig(data=Path("d"), model="hf:smollm2-135m", output=Path("o"), kind="spag").kl_coeff
        0.2
    """

    data: Path = setting(help="A dataset directory from `sparring data build` (rows as in `load_rows`).")
    model: str = setting(help="The model to train: " + SPEC_FORMS + " With +ADAPTER, that adapter is loaded "
                          "trainable and continued (the result is still one base plus one adapter).")
    output: Path = setting(help="Where the adapter goes (it must not exist yet, or be empty).")
    kind: str = setting("sft", "sft (TRL's SFTTrainer, loss on the last assistant turn; SPAG's imitation stage "
                         "with --kl-coeff 0.1), spag (SPAG's offline policy loss) or saie (SFT on SAIE learner turns).")
    lora_r: int | None = setting(None, "LoRA rank of a fresh adapter (default 16); not with --full. A continued "
                                  "adapter keeps its own rank, alpha and targets.")
    lora_alpha: int | None = setting(None, "LoRA alpha (default 2 x rank).")
    full: bool = setting(False, "Train every weight instead of a LoRA adapter; the output is then a full model "
                          "directory (play it as hf:OUTPUT). Not with +ADAPTER.")
    epochs: float = setting(1.0, "Passes over the data (default 1; SPAG: 1 per self-play round).")
    max_steps: int = setting(-1, "Optimiser steps at most, when > 0 (else the passes over the data decide).")
    lr: float | None = setting(None, "Learning rate (default 1e-4 with LoRA, 2e-6 with --full, SPAG's).")
    lr_scheduler: str = setting("constant", "Learning-rate schedule: constant, linear or cosine (default "
                                 "constant; SPAG: cosine); with --warmup-ratio it first rises linearly from 0.")
    warmup_ratio: float = setting(0.0, "Share of the steps spent warming the learning rate up from 0 (default 0; "
                                   "SPAG: 0.03).")
    batch_size: int = setting(4, "Samples per device per micro-batch (default 4).")
    grad_accum: int = setting(1, "Micro-batches per optimiser step (default 1).")
    kl_coeff: float | None = setting(None, "KL to the reference model (default 0.2 for spag, 0 for sft and saie; "
                                      "SPAG's imitation stage: 0.1).")
    sft_coeff: float = setting(0.5, "spag: weight of the NLL of the sft rows (default 0.5).")
    clip_range: float | None = setting(0.2, "spag: ratio clip range [1-c, 1+c] (default 0.2); 0 turns it off.")
    merge: bool = setting(False, "Also write OUTPUT/merged, the base with the adapter merged in.")
    report_to: str = setting("none", "transformers' report_to: none, tensorboard, wandb, trackio, ... "
                              "(comma-separated).")
    seed: int = setting(0, "Seed for initialisation and data order.")
    max_length: int = setting(1024, "Tokens per sample at most (default 1024; the prompt is cut from the left).")
    logging_steps: float = setting(0.05, "Log every N steps, or every fraction of the run when < 1.")

    def __post_init__(self) -> None:
        self.data, self.output = Path(self.data), Path(self.output)
        if self.kind not in KINDS:
            raise TrainingError(f"kind {self.kind!r}: expected one of {', '.join(KINDS)}")
        spec = ModelSpec.parse(self.model)
        if self.full:
            if self.lora_r is not None or self.lora_alpha is not None:
                raise TrainingError("--full trains every weight: drop --lora-r/--lora-alpha, or drop --full for LoRA")
            if spec.adapter:
                raise TrainingError(f"--full with an adapter spec ({self.model}): merge the adapter into a full model "
                                    "first (sparring train ... --merge writes OUTPUT/merged), or train LoRA")
            if self.merge:
                raise TrainingError("--merge merges a LoRA adapter: with --full the output is already a full model")
        else:
            self.lora_r = DEFAULT_LORA_R if self.lora_r is None else self.lora_r
            self.lora_alpha = 2 * self.lora_r if self.lora_alpha is None else self.lora_alpha
            _check(self.lora_r >= 1, "lora_r", self.lora_r, "at least 1")
            _check(self.lora_alpha > 0, "lora_alpha", self.lora_alpha, "positive")
        if self.lr is None:
            self.lr = FULL_LR if self.full else LORA_LR
        if self.kl_coeff is None:
            self.kl_coeff = DEFAULT_KL[self.kind]
        if not self.clip_range:
            self.clip_range = None
        _check(self.lr > 0, "lr", self.lr, "positive")
        _check(self.lr_scheduler in SCHEDULERS, "lr_scheduler", self.lr_scheduler, f"one of {', '.join(SCHEDULERS)}")
        _check(0 <= self.warmup_ratio < 1, "warmup_ratio", self.warmup_ratio, "at least 0 and below 1")
        _check(self.epochs > 0, "epochs", self.epochs, "positive")
        _check(self.max_steps == -1 or self.max_steps >= 1, "max_steps", self.max_steps, "-1 (use epochs) or >= 1")
        _check(self.batch_size >= 1, "batch_size", self.batch_size, "at least 1")
        _check(self.grad_accum >= 1, "grad_accum", self.grad_accum, "at least 1")
        _check(self.kl_coeff >= 0, "kl_coeff", self.kl_coeff, "0 or more")
        _check(self.sft_coeff >= 0, "sft_coeff", self.sft_coeff, "0 or more")
        _check(self.clip_range is None or 0 < self.clip_range < 1, "clip_range", self.clip_range,
               "between 0 and 1 (0 turns clipping off)")
        _check(self.max_length >= 32, "max_length", self.max_length, "at least 32")
        _check(self.logging_steps > 0, "logging_steps", self.logging_steps, "positive")
        if self.output.resolve() == self.data.resolve():
            raise TrainingError(f"--output {self.output} is the data directory: write the adapter somewhere else")

    @property
    def spec(self) -> ModelSpec:
        """The parsed model spec."""
        return ModelSpec.parse(self.model)

    def report_destinations(self) -> list[str]:
        """``report_to`` as a list of transformers integration names; `TrainingError` on an unknown one."""
        from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

        from ..tracking import report_names

        try:  # the rule every --report-to follows, against all of transformers' integrations
            return report_names(self.report_to, INTEGRATION_TO_CALLBACK)
        except TrackingError as error:
            raise TrainingError(str(error)) from None

    def trainer_kwargs(self, output_dir: Path) -> dict:
        """The transformers `TrainingArguments` both trainers share (so `sft` and `spag` compare fairly).

        The configured schedule and warm-up, no gradient checkpointing, no checkpoints saved,
        bfloat16 autocast on CUDA.
        """
        import torch

        from ._model import training_dtype

        names = self.report_destinations()
        return dict(
            output_dir=str(output_dir), per_device_train_batch_size=self.batch_size,
            gradient_accumulation_steps=self.grad_accum, learning_rate=self.lr, num_train_epochs=self.epochs,
            max_steps=self.max_steps, logging_steps=self.logging_steps, seed=self.seed,
            report_to=names if len(names) > 1 else names[0],
            bf16=training_dtype() == torch.bfloat16, gradient_checkpointing=False, save_strategy="no",
            disable_tqdm=True, dataloader_num_workers=0, weight_decay=0.0,
            warmup_steps=self.warmup_ratio,  # a float below 1 is a share of the steps (transformers 5)
            # transformers' "constant" ignores warm-up; "constant_with_warmup" is the same schedule with it
            lr_scheduler_type="constant_with_warmup" if self.lr_scheduler == "constant" and self.warmup_ratio
            else self.lr_scheduler,
            dataloader_pin_memory=torch.cuda.is_available(), use_cpu=not torch.cuda.is_available(),
        )

    def to_dict(self) -> dict:
        """The settings as JSON-ready values (paths as strings)."""
        return {k: str(v) if isinstance(v, Path) else v for k, v in asdict(self).items()}


@dataclass
class TrainResult:
    """What a training run produced.

    Args:
        output (`Path`): the adapter directory (a full model directory with ``full``).
        steps (`int`): optimiser steps taken.
        final_loss (`float | None`): the last logged training loss.
        seconds (`float`): wall time of the run, loading included.
        log_history (`list[dict]`): the Trainer's logs (also in ``OUTPUT/training_log.json``).
        play_spec (`str`): the model spec that plays the result, e.g. ``hf:smollm2-135m+OUTPUT``.
    """

    output: Path
    steps: int
    final_loss: float | None
    seconds: float
    log_history: list[dict]
    play_spec: str = ""


def trained_spec(model: str, output: Path, full: bool) -> str:
    """The spec that plays what training ``model`` into ``output`` wrote: base plus adapter, or the full model.

    Example:
        >>> trained_spec("hf:smollm2-135m+runs/e1", Path("runs/e2"), full=False)
        'hf:smollm2-135m+runs/e2'
    """
    spec = ModelSpec.parse(model)
    return f"{spec.scheme}:{output}" if full else f"{spec.scheme}:{spec.model}+{output}"


def _check(ok: bool, name: str, value, allowed: str) -> None:
    if not ok:
        raise TrainingError(f"{name}={value!r}: must be {allowed} (--{name.replace('_', '-')})")


SELFPLAY_KINDS = ("spag", "saie", "gold-sft")


@dataclass
class SelfPlayConfig:
    """Settings of a self-play run; each field's help (its ``metadata["help"]``) is the text
    ``sparring selfplay --help`` shows for its option, and its default the option's default.
    """

    protocol: str = setting("adversarial_taboo", "A built-in protocol name, a .yaml file or textarena:ENV_ID: a "
                             "game (SPAG) or a SAIE discussion.")
    model: str = setting("hf:smollm2-135m", "The starting model's spec: " + SPEC_FORMS)
    out: Path = setting(Path("runs/selfplay"), "Run directory (epoch_K/ per epoch); resumes.")
    epochs: int = setting(3, "Self-play epochs (SPAG: 3).")
    games: int = setting(64, "Episodes played per epoch.")
    eval_games: int = setting(32, "Evaluation games per epoch against the starting model (0: none).")
    eval_questions: str | None = setting(None, "SAIE: held-out questions for accuracy (a source as in `sparring "
                                          "debate`); default: the protocol's arithmetic problems with another seed.")
    kind: str | None = setting(None, "'spag', 'saie' or 'gold-sft' (SAIE's baseline: SFT on the gold rationales, "
                                "no discussion); default saie for protocols with a learner role.")
    partner: str | None = setting(None, "SAIE: the frozen partner's model (default: --model).")
    imitation: list[str] = setting(factory=list, help="Transcripts for an imitation stage before epoch 1 "
                                    "(repeatable).")
    sft_data: str | None = setting(None, "General SFT rows mixed into the SPAG data.")
    overrides: dict[str, Any] = setting(factory=dict, help="VAR=VALUE: fix a variable of the played games (YAML "
                                         "value; repeatable), e.g. --set stance=supportive for SAIE's "
                                         "supportive-only baseline.")
    warmup: int = setting(0, "SAIE: first train plain SFT on the gold rationales of this many training questions "
                           "(epoch_0).")
    holdout: list[str] | None = setting(None, "Variables evaluation draws afresh (default: those from lists and "
                                         "files).")
    seed: int = setting(0, "Seed of the games and evaluations.")
    concurrency: int = setting(32, "Episodes in flight at once.")
    train: dict[str, Any] = setting(factory=dict, help="TrainConfig settings (max_steps, lr, lora_r, ...); they "
                                     "win over the preset's.")
    preset: str | None = setting(None, "A training preset for the self-play epochs (see `PRESETS`); the "
                                  "imitation stage takes the matching imitation preset (spag -> spag-imitation).")
    bench_tasks: list[str] = setting(factory=list, help="lm-eval tasks, comma-separated (e.g. SPAG's bbh,"
                                      "arc_easy,arc_challenge,mutual,winogrande,logiqa2,piqa): scored on the "
                                      "starting model (OUT/baseline/bench.json) and after each epoch "
                                      "(OUT/epoch_K/bench.json), as `sparring eval bench` does.")
    bench_limit: int | None = setting(None, "Documents per benchmark task at most.")
    bench_include_path: str | None = setting(None, "A directory of benchmark task YAML files of your own.")
    report_to: str = setting("none", "Trackers for each epoch's metrics (sparring.tracking: tensorboard, wandb, "
                              "trackio, comma-separated, or all), logged at step = the epoch; each epoch's training "
                              "reports to them too.")

    def __post_init__(self) -> None:
        from ..evaluation._bench import parse_tasks
        from ..tracking import trackers
        from ._presets import preset_settings

        self.out = Path(self.out)
        trackers(self.report_to)  # an unknown or missing tracker fails here, before anything is played
        preset_settings(self.preset)  # an unknown name fails here
        self.bench_tasks = parse_tasks(self.bench_tasks) if self.bench_tasks else []
        if self.bench_limit is not None and self.bench_limit < 1:
            raise TrainingError(f"--bench-limit must be 1 or more, got {self.bench_limit}")
        if self.kind not in (None, *SELFPLAY_KINDS):
            raise TrainingError(f"--kind {self.kind!r}: expected one of {', '.join(SELFPLAY_KINDS)}")
        if self.warmup < 0:
            raise TrainingError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.warmup and self.imitation:
            raise TrainingError("--warmup and --imitation are both a stage before epoch 1 (epoch_0): give one")
        for name in ("epochs", "games", "eval_games"):
            if getattr(self, name) < (0 if name == "eval_games" else 1):
                raise TrainingError(f"--{name.replace('_', '-')} must be positive, got {getattr(self, name)}")

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "out": str(self.out)}
