"""The pydantic schema of protocol YAML files.

A protocol names its variables (sampled per episode), its roles (each an AutoGen agent with a
Jinja2 system prompt), a schedule (who speaks when), judging rules (sandboxed expressions run
after each message and at the end), rewards and termination. ``docs/protocols.md`` documents
every field with examples.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ._expressions import HELPERS, TemplateSyntaxError, undeclared_names

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
    history: Literal["all", "last_round"] = Field(
        "all", description="'all': every visible message of earlier rounds; 'last_round': only those of the round "
        "just before this role's (its model context is rebuilt before each turn).",
    )
    params: dict[str, Any] = Field(default_factory=dict, description="Role parameters, templated, visible as `params`.")
    prompt: str | None = Field(
        None, description="Jinja2 template of a user message sent before each of this role's turns."
    )

    @field_validator("history", mode="before")
    @classmethod
    def _no_previous_rounds(cls, value: Any) -> Any:
        if value == "previous_rounds":
            raise ValueError("'previous_rounds' is no longer accepted: use 'all' (the same behaviour: a role never "
                             "sees messages of its own round) or 'last_round' (only the round just before its own)")
        return value


class ScheduleSpec(_Strict):
    """Who speaks when."""

    type: Literal["round_robin", "sequence", "simultaneous"] = "round_robin"
    order: list[str] = Field(min_length=1, description="Roles in speaking order (sequence: every turn listed).")
    max_turns: int | None = Field(None, ge=1, description="round_robin: messages in all at most.")
    rounds: int = Field(1, ge=1, description="simultaneous: rounds; sequence/round_robin: repetitions of `order`.")

    def speaking_rounds(self) -> list[list[str]]:
        """The speakers of each round, in order: every role of `order` at once in a simultaneous
        round, else one speaker a round (round_robin with `max_turns` cycles `order` that often).

        Example:
            >>> ScheduleSpec(order=["attacker", "defender"], max_turns=3).speaking_rounds()
            [['attacker'], ['defender'], ['attacker']]
        """
        if self.type == "simultaneous":
            return [list(self.order) for _ in range(self.rounds)]
        if self.type == "round_robin" and self.max_turns is not None:
            turns = [self.order[i % len(self.order)] for i in range(self.max_turns)]
        else:
            turns = list(self.order) * self.rounds
        return [[role] for role in turns]

    def max_messages(self) -> int:
        """The most player messages an episode can hold: the speakers of all rounds together
        (an LLM judge's verdict is not a player message).

        Example:
            >>> ScheduleSpec(type="simultaneous", order=["a", "b", "c"], rounds=2).max_messages()
            6
        """
        return sum(len(speakers) for speakers in self.speaking_rounds())


class RuleSpec(_Strict):
    """A judging rule: when its expression is true, the episode has this outcome."""

    when: str = Field(description="Sandboxed Jinja2 expression over the episode, e.g. `mentions(message, target)`.")
    winner: str | None = Field(None, description="The winning role (none for a tie).")
    reason: str = Field(description="Why: written to the transcript's outcome.")
    roles: list[str] | None = Field(None, description="Only after messages of these roles (default: every role).")


class VerdictSpec(_Strict):
    """What one verdict of an LLM judge means: an outcome, or (``decides: false``) no decision."""

    winner: str | None = Field(None, description="The winning role (none for a tie).")
    reason: str | None = Field(None, description="Why: written to the transcript's outcome; required when it decides.")
    decides: bool = Field(
        True, description="false: no decision (e.g. 'continue'): play goes on, or at the end the next in line decides."
    )

    @model_validator(mode="after")
    def _outcome_or_none(self) -> "VerdictSpec":
        if self.decides and self.reason is None:
            raise ValueError("a deciding verdict needs a reason (or set decides: false)")
        if not self.decides and (self.winner is not None or self.reason is not None):
            raise ValueError("a verdict with decides: false has no winner and no reason")
        return self


_NAME = re.compile(r"[A-Za-z0-9](?:[\w -]*[A-Za-z0-9])?")
"""A verdict or score name: letters, digits, ``_``, ``-`` and spaces, starting and ending with a letter or digit."""


class LLMJudgeSpec(_Strict):
    """A model that judges the episode by a rubric: its reply ends with a line ``VERDICT: NAME``."""

    role: str = Field("judge", description="The judge's name in transcripts; must not be a player role.")
    model: str | None = Field(None, description="Model spec of the judge (default: the run's --model).")
    sampling: SamplingSpec = Field(default_factory=lambda: SamplingSpec(temperature=0, max_tokens=256))
    system: str = Field(description="Jinja2 template of the judge's system prompt.")
    prompt: str = Field(description="Jinja2 template of the rubric, over the variables, `transcript` and `messages`.")
    verdicts: dict[str, VerdictSpec] = Field(
        min_length=2, description="Allowed verdicts (matched case-insensitively) and their outcomes."
    )
    scores: list[str] = Field(
        default_factory=list, description="Scores a deciding reply gives on lines `SCORE NAME: NUMBER`."
    )
    retries: int = Field(2, ge=0, description="Times an unparsable reply is answered with a correction and asked again.")
    when: Literal["end", "each_message"] = Field("end", description="Ask once at the end, or after every message.")
    order: Literal["rules_first", "judge_first"] = Field(
        "rules_first", description="Whether the rules or the judge decide first where both may."
    )

    @model_validator(mode="after")
    def _readable_names(self) -> "LLMJudgeSpec":
        for kind, names in (("verdict", list(self.verdicts)), ("score", self.scores)):
            for name in names:
                if not _NAME.fullmatch(name) or (kind == "score" and " " in name):
                    raise ValueError(f"{kind} name {name!r}: use letters, digits, '_', '-'"
                                     f"{'' if kind == 'score' else ' and spaces'}, starting and ending with a letter or digit")
            folded = [name.lower() for name in names]
            if len(set(folded)) != len(folded):
                raise ValueError(f"{kind} names {names} differ only in case; the judge's reply is read case-insensitively")
        if not any(verdict.decides for verdict in self.verdicts.values()):
            raise ValueError("no verdict decides: give at least one without decides: false")
        return self


class JudgeSpec(_Strict):
    """How episodes are decided."""

    rules: list[RuleSpec] = Field(default_factory=list, description="Checked after each message, in order.")
    final: list[RuleSpec] = Field(default_factory=list, description="Checked once, after the last message.")
    default: RuleSpec = Field(
        default_factory=lambda: RuleSpec(when="true", winner=None, reason="no decision"),
        description="The outcome when no rule fired.",
    )
    llm: LLMJudgeSpec | None = Field(
        None, description="A model judge, asked at the end or after each message, before or after the rules."
    )
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
        True, description="End the episode at the first deciding message; false: play the whole schedule, and "
        "no message decides it (only the hook, final rules, the LLM judge at the end or default).",
    )
    max_total_tokens: int | None = Field(None, ge=1, description="End the episode once its messages used this many tokens.")
    speaker_label: str | None = Field(
        None, description="Jinja2 template over `speaker` put before each message of another role a model is handed, "
        "e.g. '{{ speaker }}: ' ('' for none); default: that label for a role that sees more than one other role, "
        "else none.",
    )
    training: TrainingSpec = Field(
        default_factory=TrainingSpec, description="Settings of `sparring data build` for this protocol's transcripts."
    )

    @field_validator("speaker_label")
    @classmethod
    def _label_template(cls, value: str | None) -> str | None:
        if value is None:
            return value
        try:
            unknown = sorted(undeclared_names(value) - {"speaker"} - set(HELPERS))
        except TemplateSyntaxError as error:
            raise ValueError(f"bad template: {error.message}") from error
        if unknown:
            raise ValueError(f"undefined name {unknown[0]!r}; this field may use ['speaker'] (the author's role "
                             f"name) and the helpers {sorted(HELPERS)}")
        return value
