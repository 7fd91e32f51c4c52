"""The settings of each run-making command, one dataclass per command: names, defaults and help in one place.

A field's ``metadata["help"]`` is what the command's ``--help`` shows for its option, and its default the
option's default; the library functions that run them take the same defaults from here. The training
commands' classes, `TrainConfig` and `SelfPlayConfig`, live with the trainers (``sparring.trainer``) and
are built the same way.

Example:
    >>> PlayConfig.concurrency, QAConfig.rounds
    (32, 2)
    >>> help_of(WinRateConfig, "games")
    'Games in all; half with the model in each role.'
"""

from __future__ import annotations

from dataclasses import MISSING, dataclass, field, fields
from pathlib import Path
from typing import Any

from .agents._spec import DEFAULT_MODEL, SPEC_FORMS

MODEL_HELP = "Model spec: " + SPEC_FORMS
QUESTIONS_HELP = "'arithmetic[:N]', a .jsonl file (question/answer) or a Hugging Face dataset name."


def setting(default: Any = MISSING, help: str = "", factory: Any = None) -> Any:
    """A settings field with its help (no default: a required one)."""
    if factory is not None:
        return field(default_factory=factory, metadata={"help": help})
    return field(default=default, metadata={"help": help})


def help_of(config: type, name: str) -> str:
    """The help of field ``name`` of settings class ``config``."""
    return field_of(config, name).metadata["help"]


def field_of(config: type, name: str):
    """Field ``name`` of settings class ``config`` (a `KeyError` names the class when there is none)."""
    found = {f.name: f for f in fields(config)}
    if name not in found:
        raise KeyError(f"{config.__name__} has no setting {name!r}")
    return found[name]


@dataclass
class PlayConfig:
    """`sparring play`: episodes of one protocol, written to OUT/transcripts.jsonl."""

    protocol: str = setting(help="A built-in protocol name, a protocol .yaml file or textarena:ENV_ID.")
    games: int = setting(8, "Episodes to play.")
    model: str = setting(DEFAULT_MODEL, MODEL_HELP)
    roles: dict[str, str] = setting(factory=dict, help="ROLE=SPEC: a model for one role (repeatable); SEAT=SPEC in "
                                    "a protocol with seats.")
    out: Path = setting(Path("runs/play"), "Directory for transcripts.jsonl.")
    concurrency: int = setting(32, "Episodes in flight at once.")
    seed: int = setting(0, "Seed: the same seed gives the same episode ids and variables.")
    resume: bool = setting(False, "Continue a run in --out: skip episodes already written.")
    overrides: dict[str, Any] = setting(factory=dict, help="VAR=VALUE: fix a variable (YAML value; repeatable).")
    allow_hooks: bool = setting(False, "Run a Python judge hook the protocol names.")
    max_error_share: float = setting(0.1, "Exit with code 2 when more than this share of the episodes played "
                                     "failed (backend or protocol errors).")


@dataclass
class WinRateConfig:
    """`sparring eval winrate`: a model against an opponent, half the games in each role."""

    protocol: str = setting(help="A two-sided protocol: a built-in name, a .yaml file or textarena:ENV_ID.")
    model: str = setting(help="The model evaluated. " + MODEL_HELP)
    opponent: str = setting(help="The model it plays against (same spec forms).")
    games: int = setting(32, "Games in all; half with the model in each role.")
    out: Path = setting(Path("runs/eval/winrate"), "Directory for transcripts.jsonl and winrate.json.")
    seed: int = setting(0, "Seed: the halves play with seeds 2*SEED and 2*SEED+1.")
    concurrency: int = setting(32, "Games in flight at once.")
    resume: bool = setting(False, "Continue an evaluation in --out.")
    exclude: dict[str, set] = setting(factory=dict, help="VAR=VALUE: never play this value (held out; repeatable).")


@dataclass
class QAConfig:
    """`sparring eval qa` and `sparring debate`: accuracy on a question set, alone and in discussion."""

    questions: str = setting(help=QUESTIONS_HELP)
    model: str = setting(help=MODEL_HELP)
    debate: bool = setting(False, "Also score a majority vote, a multi-agent debate and a single agent reflecting "
                           "on its own answers (Du et al.).")
    agents: int = setting(3, "Agents in the debate and the majority vote.")
    rounds: int = setting(2, "Rounds of the debate and of the reflection, the first being independent answers.")
    limit: int | None = setting(None, "Use the first N questions only.")
    out: Path = setting(Path("runs/eval/qa"), "Directory for transcripts.jsonl and accuracy.json.")
    seed: int = setting(0, "Seed for sampling and episode ids.")
    concurrency: int = setting(32, "Questions in flight at once.")
    resume: bool = setting(False, "Continue a run in --out.")


@dataclass
class BenchConfig:
    """`sparring eval bench`: lm-evaluation-harness tasks on one model."""

    model: str = setting(help="hf:... (in this process, +ADAPTER included) or openai:MODEL@URL (lm-eval's "
                         "local-completions at URL/completions); not litellm:.")
    tasks: str = setting(help="lm-eval tasks or groups, comma-separated, e.g. arc_easy,piqa (SPAG's: bbh,arc_easy,"
                         "arc_challenge,mutual,winogrande,logiqa2,piqa). List them with `lm-eval ls tasks`.")
    limit: int | None = setting(None, "Documents per task at most (a quick look: the score of a subset).")
    out: Path = setting(Path("runs/eval/bench"), "Directory for bench.json.")
    include_path: Path | None = setting(None, "A directory of task YAML files of your own (with their data, e.g. "
                                        "JSONL): they run offline.")
    num_fewshot: int | None = setting(None, "Few-shot examples for every task (default: each task's own).")
    batch_size: str = setting("8", "lm-eval's batch size, or auto (hf: on a GPU).")
    tokenizer: str | None = setting(None, "openai: only: the served model's tokenizer (hub id, directory or hf: "
                                    "spec; 'none' for generation-only tasks). Default: the served name when it is "
                                    "one of those.")


@dataclass
class DataConfig:
    """`sparring data build`: a training dataset from judged transcripts."""

    kind: str = setting(help="imitation (winners' turns), spag (SPAG rewards) or saie (learner turns).")
    transcripts: list[Path] = setting(help="Transcript .jsonl files (a replayed id counts once).")
    out: Path = setting(help="The dataset directory to write (must be empty or absent).")
    roles: list[str] | None = setting(None, "imitation: every turn of these roles; saie: the learner role.")
    sft_data: Path | None = setting(None, "A JSONL of general SFT examples to mix in (messages, prompt/completion "
                                    "or question/answer).")
    protocol: str | None = setting(None, "The protocol played (default: the built-in the transcripts name; unknown "
                                   "ones get a plain view).")
    drop_reasons: list[str] | None = setting(None, "An outcome reason never trained on (repeatable; replaces the "
                                             "protocol's training.drop_reasons, the default).")
    seed: int = setting(0, "Seed of the prompt variation.")
    vary_prompts: bool = setting(True, "spag: vary the rules' wording and dialogue format (SPAG).")
    overwrite: bool = setting(False, "Replace a non-empty output directory.")
