"""The pydantic schema of protocol YAML files.

A protocol names its variables (sampled per episode), its roles (each an AutoGen agent with a
Jinja2 system prompt), a schedule (who speaks when), judging rules (sandboxed expressions run
after each message and at the end), rewards and termination. ``docs/protocols.md`` documents
every field with examples.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VariableSpec(_Strict):
    """Where one variable's value comes from; exactly one source."""

    values: list[Any] | None = Field(None, description="An inline list to sample from.")
    file: str | None = Field(
        None, description="A word list (.txt, one per line), .jsonl or .csv file, relative to the protocol file."
    )
    field: str | None = Field(None, description="For .jsonl/.csv records: the field to take (default: the whole record).")
    questions: str | None = Field(
        None, description="A question source: 'arithmetic', a .jsonl path or a Hugging Face dataset name."
    )
    builtin: str | None = Field(None, description="A list shipped with sparring, e.g. 'taboo_words'.")
    order: Literal["random", "sequential"] = Field("random", description="Sample at random (seeded) or in file order.")

    @model_validator(mode="after")
    def _one_source(self) -> "VariableSpec":
        sources = [n for n in ("values", "file", "questions", "builtin") if getattr(self, n) is not None]
        if len(sources) != 1:
            raise ValueError(f"give exactly one of values, file, questions, builtin (got {sources or 'none'})")
        return self


class SamplingSpec(_Strict):
    """Sampling settings of a role's model calls."""

    temperature: float | None = Field(None, ge=0, description="0 for greedy decoding.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int | None = Field(None, ge=1, description="New tokens per message at most.")
    stop: list[str] | None = Field(None, description="Strings that end a message.")
    extra: dict[str, Any] | None = Field(
        None, description="Backend-specific settings, passed as they are: request fields sent in `extra_body` for "
        "openai: (e.g. vLLM's top_k, min_p, repetition_penalty), keyword arguments of litellm.acompletion for "
        "litellm:; the embedded hf: engine ignores them (with a warning).",
    )

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class RoleSpec(_Strict):
    """One participant: an AutoGen agent."""

    system: str = Field(description="Jinja2 template of the system prompt, over the variables and `params`.")
    model: str | None = Field(None, description="Model spec of this role (default: the run's --model).")
    sampling: SamplingSpec = Field(default_factory=SamplingSpec)
    sees: Literal["all"] | list[str] = Field(
        "all", description="Whose messages this role receives: 'all' or a list of role names (its own always)."
    )
    history: Literal["all", "previous_rounds"] = Field(
        "all", description="'previous_rounds': in simultaneous rounds, only messages of earlier rounds."
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Role parameters, templated, visible as `params`.")
    prompt: str | None = Field(
        None, description="Jinja2 template of a user message sent before each of this role's turns."
    )


class ScheduleSpec(_Strict):
    """Who speaks when."""

    type: Literal["round_robin", "sequence", "simultaneous"] = "round_robin"
    order: list[str] = Field(min_length=1, description="Roles in speaking order (sequence: every turn listed).")
    max_turns: int | None = Field(None, ge=1, description="round_robin: messages in all at most.")
    rounds: int = Field(1, ge=1, description="simultaneous: rounds; sequence/round_robin: repetitions of `order`.")


class RuleSpec(_Strict):
    """A judging rule: when its expression is true, the episode has this outcome."""

    when: str = Field(description="Sandboxed Jinja2 expression over the episode, e.g. `mentions(message, target)`.")
    winner: str | None = Field(None, description="The winning role (none for a tie).")
    reason: str = Field(description="Why: written to the transcript's outcome.")
    roles: list[str] | None = Field(None, description="Only after messages of these roles (default: every role).")


class VerdictSpec(_Strict):
    """What one verdict of an LLM judge means."""

    winner: str | None = Field(None, description="The winning role (none for a tie).")
    reason: str = Field(description="Why: written to the transcript's outcome.")


class LLMJudgeSpec(_Strict):
    """A model that judges a finished episode no rule decided, answering with one verdict word."""

    role: str = Field("judge", description="The judge's name in transcripts; must not be a player role.")
    system: str = Field(description="Jinja2 template of the judge's system prompt.")
    prompt: str = Field(description="Jinja2 template of the question, over the variables and `messages`.")
    verdicts: dict[str, VerdictSpec] = Field(
        min_length=2, description="Allowed replies (matched whole, case-insensitive) and their outcomes."
    )
    model: str | None = Field(None, description="Model spec of the judge (default: the run's --model).")
    sampling: SamplingSpec = Field(default_factory=lambda: SamplingSpec(temperature=0, max_tokens=8))


class JudgeSpec(_Strict):
    """How episodes are decided."""

    rules: list[RuleSpec] = Field(default_factory=list, description="Checked after each message, in order.")
    final: list[RuleSpec] = Field(default_factory=list, description="Checked once, after the last message.")
    default: RuleSpec = Field(
        default_factory=lambda: RuleSpec(when="true", winner=None, reason="no decision"),
        description="The outcome when no rule fired.",
    )
    llm: LLMJudgeSpec | None = Field(None, description="A model judge, asked when no rule decided.")
    hook: str | None = Field(
        None, description="'package.module:function' called with the episode; runs only with --allow-hooks."
    )


class TrainingSpec(_Strict):
    """How `sparring data build` turns this protocol's transcripts into training data (optional)."""

    drop_reasons: list[str] = Field(
        default_factory=list,
        description="Outcome reasons whose games are never trained on (e.g. 'attacker breaks the rules').",
    )
    system_variants: dict[str, list[str]] = Field(
        default_factory=dict,
        description="Per role, paraphrased Jinja2 system prompts drawn at random for training prompts (SPAG).",
    )


class ProtocolSpec(_Strict):
    """A whole protocol file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Identifier, used in transcripts.")
    version: int = Field(SCHEMA_VERSION, description="Schema version of this file.")
    description: str = ""
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    roles: dict[str, RoleSpec] = Field(min_length=1)
    schedule: ScheduleSpec
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    rewards: dict[str, str] = Field(
        default_factory=dict,
        description="Per role, a sandboxed expression for its reward (default: 1 win, -1 loss, 0 tie).",
    )
    stop_on_outcome: bool = Field(
        True, description="End the episode at the first deciding message (else play on; the first decision stands)."
    )
    max_total_tokens: int | None = Field(None, ge=1, description="End the episode once its messages used this many tokens.")
    training: TrainingSpec = Field(
        default_factory=TrainingSpec, description="Settings of `sparring data build` for this protocol's transcripts."
    )
