"""The pydantic schema of protocol YAML files.

A protocol names its variables (sampled per episode), its roles (each an AutoGen agent with a
Jinja2 system prompt), a schedule (who speaks when), judging rules (sandboxed expressions run
after each message and at the end), rewards and termination. ``docs/protocols.md`` documents
every field with examples.
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, ValidationInfo, field_validator, model_validator

from ._expressions import HELPERS, TemplateSyntaxError, undeclared_names

SCHEMA_VERSION = 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class RangeSpec(_Strict):
    """Integers from ``min`` to ``max``, both included, ``step`` apart; also written ``[min, max]``
    or ``[min, max, step]``."""

    min: StrictInt = Field(description="The smallest value.")
    max: StrictInt = Field(description="The largest value (drawn when ``step`` reaches it).")
    step: StrictInt = Field(1, ge=1, description="The distance between values.")

    @model_validator(mode="before")
    @classmethod
    def _from_list(cls, data: Any) -> Any:
        if isinstance(data, list):
            if len(data) not in (2, 3):
                raise ValueError("give [min, max], [min, max, step] or {min: ..., max: ..., step: ...}")
            return dict(zip(("min", "max", "step"), data))
        return data

    @model_validator(mode="after")
    def _ordered(self) -> "RangeSpec":
        if self.min > self.max:
            raise ValueError(f"min ({self.min}) is greater than max ({self.max})")
        return self

    def numbers(self) -> range:
        """The values, as a `range` (never built as a list)."""
        return range(self.min, self.max + 1, self.step)


_SOURCES = ("values", "file", "questions", "builtin", "range", "uniform", "expr")


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
    range: RangeSpec | None = Field(None, description="Integers: {min, max, step} or [min, max], both ends included.")
    uniform: tuple[float, float] | None = Field(None, description="A float drawn uniformly from [low, high].")
    expr: str | None = Field(
        None, description="Derived: a sandboxed expression over the variables listed before this one (e.g. 'n * 2')."
    )
    order: Literal["random", "sequential"] = Field("random", description="Sample at random (seeded) or in file order.")
    k: int | None = Field(None, ge=1, description="Draw this many distinct values of the list at once, as a list.")
    unpack: list[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]] | None = Field(
        None, min_length=1, description="Also give the value's parts as variables of these names: its keys (a mapping) "
        "or its items (a list of as many), drawn together.",
    )

    @property
    def source(self) -> str:
        """The field that gives the values: ``values``, ``file``, ``questions``, ``builtin``, ``range``,
        ``uniform`` or ``expr``."""
        return next(n for n in _SOURCES if getattr(self, n) is not None)

    @field_validator("expr")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                undeclared_names(value, expression=True)
            except TemplateSyntaxError as error:
                raise ValueError(f"bad expression: {error.message}") from error
        return value

    @model_validator(mode="after")
    def _one_source(self) -> "VariableSpec":
        sources = [n for n in _SOURCES if getattr(self, n) is not None]
        if len(sources) != 1:
            raise ValueError(f"give exactly one of {', '.join(_SOURCES)} (got {sources or 'none'})")
        if self.uniform is not None and self.uniform[0] > self.uniform[1]:
            raise ValueError(f"uniform: low ({self.uniform[0]:g}) is greater than high ({self.uniform[1]:g})")
        if self.source in ("uniform", "expr"):
            given = [n for n in ("order", "k") if n in self.model_fields_set]
            if given:
                raise ValueError(f"{given[0]}: not with {self.source} (it walks or draws from a list of values)")
        if self.unpack is not None:
            if self.source in ("range", "uniform"):
                raise ValueError(f"unpack: the values of {self.source} are numbers, which have no parts")
            if self.k is not None and len(self.unpack) != self.k:
                raise ValueError(f"unpack: {len(self.unpack)} names for the k={self.k} values drawn; give one name per value")
        return self


class SamplingSpec(_Strict):
    """Sampling settings of a role's model calls."""

    temperature: float | None = Field(None, ge=0, description="0 for greedy decoding.")
    top_p: float | None = Field(None, gt=0, le=1, description="Nucleus sampling mass.")
    max_tokens: int | None = Field(None, ge=1, description="New tokens per message at most.")
    stop: list[str] | None = Field(None, description="Strings that end a message.")
    seed: int | None = Field(
        None, description="Seeds this role's calls, on backends that take seeds: each episode's calls get a seed drawn "
        "from this one, the episode's id and the role, so an episode replays exactly on the embedded engine whatever else "
        "is in flight, while different episodes draw differently.",
    )
    extra: dict[str, Any] | None = Field(
        None, description="Backend-specific settings, passed as they are: request fields sent in `extra_body` for "
        "openai: (e.g. vLLM's top_k, min_p, repetition_penalty), keyword arguments of litellm.acompletion for "
        "litellm:; the embedded hf: engine ignores them (with a warning).",
    )

    def settings(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class OnInvalidSpec(_Strict):
    """The outcome of an episode whose role ran out of retries on invalid messages."""

    winner: str | None = Field(None, description="The winning role or team (none for a tie).")
    reason: str = Field("invalid move", description="Written to the transcript's outcome.")


DEFAULT_INVALID_PROMPT = "'{{ message }}' is not a valid move. Try again."
"""The error a role with `valid` is sent back when it gives none of its own (`invalid_prompt`)."""


class RoleSpec(_Strict):
    """One participant: an AutoGen agent (``system``), or a scripted role (``script``) with no model.

    Fields are validated in this order: ``script`` first, so that the fields a scripted role has
    no use for, and those that need ``valid``, are refused at their own line.
    """

    script: str | None = Field(
        None, description="A scripted role's message: a Jinja2 template rendered at each of its turns (no model)."
    )
    system: str | None = Field(
        None, description="Jinja2 template of the system prompt, over the variables and `params` (model roles: required)."
    )
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
    valid: str | None = Field(
        None, description="Sandboxed expression over `message` (the reply) and the role's template names: a reply "
        "for which it is false is sent back with `invalid_prompt` and the role asked again.",
    )
    invalid_prompt: str = Field(
        DEFAULT_INVALID_PROMPT, description="Jinja2 template of the error sent back after an invalid reply, over "
        "`message` (the reply) and the role's template names.",
    )
    to: str | None = Field(None, description="An expression over the rule names giving who this role's message is "
                           "addressed to (a role, a list of roles; none: everyone its `sees` allows): a whisper channel.")
    retries: int = Field(2, ge=0, description="Times an invalid reply is sent back before `on_invalid` decides.")
    on_invalid: OnInvalidSpec = Field(
        default_factory=OnInvalidSpec, description="The episode's outcome when the role's last retry is invalid too.")

    @property
    def scripted(self) -> bool:
        """Whether the role is scripted: its messages are its ``script`` rendered, it has no model."""
        return self.script is not None

    @field_validator("system", "model", "sampling", "prompt", "valid")
    @classmethod
    def _no_model_settings_when_scripted(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("script") is not None and value is not None:
            raise ValueError(f"a scripted role (script) has no model, so no {info.field_name}: remove one of the two")
        return value

    @field_validator("invalid_prompt", "retries", "on_invalid")
    @classmethod
    def _only_with_valid(cls, value: Any, info: ValidationInfo) -> Any:
        if info.data.get("valid") is None:
            raise ValueError(f"{info.field_name} applies to invalid replies: give the role a `valid` expression too")
        return value

    @field_validator("history", mode="before")
    @classmethod
    def _no_previous_rounds(cls, value: Any) -> Any:
        if value == "previous_rounds":
            raise ValueError("'previous_rounds' is no longer accepted: use 'all' (the same behaviour: a role never "
                             "sees messages of its own round) or 'last_round' (only the round just before its own)")
        return value

    @model_validator(mode="after")
    def _model_or_script(self) -> "RoleSpec":
        if self.system is None and self.script is None:
            raise ValueError("give the role a `system` prompt (a model plays it) or a `script` (its message template)")
        return self


class ScheduleSpec(_Strict):
    """Who speaks when: a fixed order, a next speaker chosen by expression, or phases that chain schedules."""

    type: Literal["round_robin", "sequence", "simultaneous", "dynamic", "phases"] = "round_robin"
    order: list[str] = Field(default_factory=list, description="Roles in speaking order (sequence: every turn listed; "
                             "dynamic: the roles `next` may choose; phases: every phase's roles, filled in).")
    max_turns: int | None = Field(None, ge=1, description="round_robin: messages in all at most; dynamic: required.")
    rounds: int = Field(1, ge=1, description="simultaneous: rounds; sequence/round_robin: repetitions of `order`.")
    first: str | None = Field(None, description="dynamic: the first speaker, a role or a template over the variables "
                              "and state (default: the first of `order`).")
    next: str | None = Field(None, description="dynamic: an expression over the rule names giving the next speaker "
                             "after each message (none or '' ends the schedule).")
    until: str | None = Field(None, description="An expression checked after each round: when true, this schedule "
                              "(or phase) ends.")
    name: str | None = Field(None, description="A phase's name, visible as `phase` in templates and rules.")
    phases: list["ScheduleSpec"] | None = Field(None, description="phases: the schedules played one after another.")

    @model_validator(mode="after")
    def _consistent(self) -> "ScheduleSpec":
        if self.type == "phases":
            if not self.phases:
                raise ValueError("a 'phases' schedule needs `phases`: a list of schedules played in turn")
            if any(phase.type == "phases" for phase in self.phases):
                raise ValueError("a phase cannot itself be a 'phases' schedule: list its schedules here")
            if not self.order:
                self.order = list(dict.fromkeys(role for phase in self.phases for role in phase.order))
            return self
        if self.phases is not None:
            raise ValueError(f"`phases` belongs to type 'phases', not {self.type!r}")
        if not self.order:
            raise ValueError("`order` needs at least one role")
        if self.type == "dynamic":
            if self.next is None or self.max_turns is None:
                raise ValueError("a 'dynamic' schedule needs `next` (the next speaker, by expression) and `max_turns`")
        elif self.next is not None or self.first is not None:
            raise ValueError(f"`next` and `first` belong to type 'dynamic', not {self.type!r}")
        return self

    def speaking_rounds(self) -> list[list[str]]:
        """The speakers of each round of a fixed schedule, in order: every role of `order` at once in a
        simultaneous round, else one speaker a round (round_robin with `max_turns` cycles `order` that often).

        Raises:
            `ValueError`: a dynamic or phased schedule (see `sparring.protocols._schedule`).

        Example:
            >>> ScheduleSpec(order=["attacker", "defender"], max_turns=3).speaking_rounds()
            [['attacker'], ['defender'], ['attacker']]
        """
        if self.type in ("dynamic", "phases"):
            raise ValueError(f"a {self.type!r} schedule's speakers depend on the game: see _schedule.schedule_rounds")
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
        if self.type == "phases":
            return sum(phase.max_messages() for phase in self.phases)
        if self.type == "dynamic":
            return self.max_turns
        return sum(len(speakers) for speakers in self.speaking_rounds())


class RuleSpec(_Strict):
    """A judging rule: when its expression is true, the episode has this outcome."""

    when: str = Field(description="Sandboxed Jinja2 expression over the episode, e.g. `mentions(message, target)`.")
    winner: str | None = Field(None, description="The winning role or team (none for a tie), or a Jinja2 template that "
                               "renders one (e.g. `{{ messages[-1].role }}`; empty or 'none' for a tie).")
    reason: str = Field(description="Why: written to the transcript's outcome; a Jinja2 template over the rule's names.")
    roles: list[str] | None = Field(None, description="Only after messages of these roles (default: every role).")

    @property
    def computed_winner(self) -> bool:
        """Whether ``winner`` is a template, rendered when the rule fires, rather than a role name."""
        return self.winner is not None and "{" in self.winner


class UpdateSpec(_Strict):
    """A change of the game state after a message: new values computed from the old state and the message."""

    set: dict[str, str] = Field(min_length=1, description="State key -> sandboxed expression of its new value, over "
                                "the state before this update, the message and the rule names.")
    roles: list[str] | None = Field(None, description="Only after messages of these roles (default: every role).")
    when: str | None = Field(None, description="Only when this expression holds (default: always).")


class VerdictSpec(_Strict):
    """What one verdict of an LLM judge means: an outcome, or (``decides: false``) no decision."""

    winner: str | None = Field(None, description="The winning role or team (none for a tie).")
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

    @field_validator("verdicts", "scores")
    @classmethod
    def _readable_names(cls, value, info: ValidationInfo):
        kind, names = ("verdict", list(value)) if info.field_name == "verdicts" else ("score", value)
        for name in names:
            if not _NAME.fullmatch(name) or (kind == "score" and " " in name):
                raise ValueError(f"{kind} name {name!r}: use letters, digits, '_', '-'"
                                 f"{'' if kind == 'score' else ' and spaces'}, starting and ending with a letter or digit")
        folded = [name.lower() for name in names]
        if len(set(folded)) != len(folded):
            raise ValueError(f"{kind} names {names} differ only in case; the judge's reply is read case-insensitively")
        return value

    @model_validator(mode="after")
    def _one_verdict_decides(self) -> "LLMJudgeSpec":
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


class SpeakerLabels(_Strict):
    """One set of speaker names of a training query: the trained role's and everyone else's."""

    own: str = Field(description="Jinja2 over `speaker`: the label of the trained role's messages and of the "
                     "line it answers on, e.g. 'Assistant' or '{{ speaker }}' (its role name).")
    others: str = Field(description="Jinja2 over `speaker`: the label of the other roles' messages, e.g. 'Human'.")


class VariationSpec(_Strict):
    """Training prompts written as one query drawn from these parts, as SPAG's
    ``randomly_convert_game_history_to_query`` does: each list is drawn from uniformly (repeat an entry
    to weight it), the rules' wording from the role's ``system`` and ``system_variants``."""

    history_prefixes: list[str] = Field(
        min_length=1, description="Text put before each history line, the rules line and the answer line "
        "(e.g. '\\n\\n### ').")
    speaker_labels: list[SpeakerLabels] = Field(min_length=1, description="Sets of speaker labels.")
    layouts: list[Literal["chat", "chat_inverse", "alpaca"]] = Field(
        default_factory=lambda: ["chat", "chat_inverse", "alpaca"], min_length=1,
        description="chat: rules line (with the instruction), history, answer line; chat_inverse: the history "
        "first; alpaca: rules, history header and lines, instruction, answer line.")
    system_prefixes: list[str] = Field(min_length=1, description="Names of the rules line, e.g. 'Rules'.")
    instructions: dict[str, str] = Field(
        min_length=1, description="Per role, Jinja2 over the names of its `system` prompt: what it is asked to do "
        "(SPAG: 'You are the attacker. The target word is `{{ target }}`. ...').")
    no_history: str = Field("", description="Text after the rules (chat: after the instruction) at the first turn.")
    history_header: str = Field("", description="alpaca: the title of the history, e.g. 'Game History:'.")
    alpaca_prefix_chance: float = Field(
        0.2, ge=0, le=1, description="alpaca: the chance that the rules start with a system prefix and ': '.")
    alpaca_inline_chance: float = Field(
        0.2, ge=0, le=1, description="alpaca: the chance that the query ends with the instruction, its last "
        "character replaced by ': ', instead of the instruction and an answer line.")


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
    variation: VariationSpec | None = Field(
        None, description="Varied training prompts as one query of drawn parts (SPAG's); none: the chat as "
        "played or the history flattened into one message, drawn at random.",
    )
    include_invalid: bool = Field(
        False, description="Also train on replies a role's `valid` expression rejected (each with the retries "
        "before it as context); by default they are never rows.",
    )


class EnvironmentSpec(_Strict):
    """A game environment that runs the episode in place of the schedule and the judge."""

    textarena: str = Field(description="A TextArena environment id, e.g. 'TicTacToe-v0' (the textarena extra); its "
                           "players are the protocol's roles, in file order: player 0 is the first role.")
    max_steps: int = Field(200, ge=1, description="Moves at most; an episode still running then is a tie ('step limit').")


_NOT_WITH_ENVIRONMENT = ("variables", "judge", "state", "update", "rewards", "seats", "teams", "max_total_tokens",
                         "stop_on_outcome")
"""The fields an environment protocol leaves to its environment: it draws the game, decides it and scores it."""


class ProtocolSpec(_Strict):
    """A whole protocol file."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Identifier, used in transcripts.")
    version: int = Field(SCHEMA_VERSION, description="Schema version of this file.")
    description: str = ""
    variables: dict[str, VariableSpec] = Field(default_factory=dict)
    roles: dict[str, RoleSpec] = Field(min_length=1)
    schedule: ScheduleSpec
    judge: JudgeSpec = Field(default_factory=JudgeSpec)
    state: dict[str, Any] = Field(
        default_factory=dict, description="The game state's initial values: strings are Jinja2 templates over the "
        "variables; a string that is one `{{ expression }}` gives the expression's value (a number, a list, ...).",
    )
    update: list[UpdateSpec] = Field(
        default_factory=list, description="Changes of the state after each message, applied in order.")
    rewards: dict[str, str] = Field(
        default_factory=dict,
        description="Per role, a sandboxed expression for its reward (default: 1 win, -1 loss, 0 tie).",
    )
    stop_on_outcome: bool = Field(
        True, description="End the episode at the first deciding message; false: play the whole schedule, and "
        "no message decides it (only the hook, final rules, the LLM judge at the end or default).",
    )
    seats: dict[str, str] = Field(
        default_factory=dict, description="Seat name -> the role it plays in an episode: a role name or a Jinja2 "
        "template over the variables rendering one (every model role exactly once). Models are given per seat, "
        "other players see a message's seat, and templates read `seats` (seat -> role) and `seat`.",
    )
    teams: dict[str, list[str]] = Field(
        default_factory=dict, description="Team name -> its roles: a winner (of a rule, a verdict, an on_invalid) "
        "may name a team, and then each of its roles wins (default rewards, win rates, imitation rows).",
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
    environment: EnvironmentSpec | None = Field(
        None, description="A game environment (TextArena) that plays the episode: each turn the player it names is "
        "handed what it observed since its last move, and the environment decides and scores the game. The schedule "
        "is then optional (default: the roles in order, `max_steps` turns) and not followed.",
    )

    @model_validator(mode="before")
    @classmethod
    def _environment_schedule(cls, data: Any) -> Any:
        """An environment protocol needs no schedule: it gets one of the roles, as long as the step limit, so
        that data building caps an episode where play does."""
        if not (isinstance(data, dict) and isinstance(data.get("environment"), dict)
                and isinstance(data.get("roles"), dict) and data["roles"]):
            return data
        # each player sees only what its environment shows it (its observations, its prompts)
        roles = {name: {"sees": [], **role} if isinstance(role, dict) else role for name, role in data["roles"].items()}
        data = {**data, "roles": roles}
        if "schedule" not in data:
            steps = data["environment"].get("max_steps", EnvironmentSpec.model_fields["max_steps"].default)
            data["schedule"] = {"order": list(roles), "max_turns": steps}
        return data

    @model_validator(mode="after")
    def _environment_decides(self) -> "ProtocolSpec":
        if self.environment is None:
            return self
        given = [name for name in _NOT_WITH_ENVIRONMENT if name in self.model_fields_set]
        if given:
            raise ValueError(f"{given[0]}: an environment protocol leaves it to its environment (which draws, "
                             f"decides and scores the game); remove {given[0]}")
        for name, role in self.roles.items():
            if role.scripted:
                raise ValueError(f"roles.{name}: in an environment protocol every role is a player its environment "
                                 "asks for moves: give it a `system` prompt, not a `script`")
            fields = sorted({"prompt", "valid", "to", "history"} & role.model_fields_set) + (["sees"] if role.sees else [])
            if fields:
                raise ValueError(f"roles.{name}.{fields[0]}: not in an environment protocol: its environment hands each "
                                 "player its observation as the turn's prompt, judges its moves and shows it only what "
                                 "it observes")
        return self

    @property
    def model_roles(self) -> list[str]:
        """The roles a model plays (every role but the scripted ones), in file order."""
        return [name for name, role in self.roles.items() if not role.scripted]

    def winning_roles(self, winner: str | None) -> list[str]:
        """The roles that win when ``winner`` (a role, a team, or None for a tie) wins.

        Example:
            >>> spec = ProtocolSpec(name="g", roles={"a": {"system": "A"}, "b": {"system": "B"}},
            ...                     schedule={"order": ["a", "b"]}, teams={"both": ["a", "b"]})
            >>> spec.winning_roles("both"), spec.winning_roles("a"), spec.winning_roles(None)
            (['a', 'b'], ['a'], [])
        """
        return [] if winner is None else list(self.teams.get(winner, [winner]))

    @property
    def variable_names(self) -> list[str]:
        """Every variable name the protocol defines, in file order: each variable, then the names it unpacks
        (and ``seats``, the seating drawn from them, when the protocol has seats)."""
        names = [n for name, variable in self.variables.items() for n in (name, *(variable.unpack or ()))]
        return [*names, "seats"] if self.seats else names

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
