"""The `sparring` command line: a thin layer that parses, calls the library and prints."""

from __future__ import annotations

import dataclasses
import functools
import sys
from pathlib import Path
from typing import Any, List, Optional

import typer
from rich import get_console
from rich.console import Console
from rich.table import Table

from .agents._spec import DEFAULT_MODEL
from .errors import SparringError
from .settings import MODEL_HELP, BenchConfig, DataConfig, PlayConfig, QAConfig, WinRateConfig, field_of, help_of
from .trainer._config import SelfPlayConfig, TrainConfig

app = typer.Typer(
    help="Language-model agents play games and discussions, and train on what they said.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = get_console()  # the one rich console, so the training bar nests inside self-play's progress display
errors = Console(stderr=True)

PRESET_HELP = ("Training defaults by name: spag (the paper's: full weights, lr 2e-6, cosine, 3% warm-up, KL 0.2, "
               "128 per step), spag-imitation (lr 5e-6, KL 0.1), spag-lora, spag-imitation-lora (LoRA at 10x the "
               "lr). Flags given win over it; see docs/training.md.")


_FIELD_DEFAULT = object()


def _setting(config: type, name: str, *flags: str, default: Any = _FIELD_DEFAULT, **settings: Any) -> Any:
    """A typer option for field ``name`` of settings class ``config``: its help and default are the field's.
    ``default`` only where the command line's differs: ``...`` (required), None (unset: a preset or the
    trainer decides), or a list for a repeatable option."""
    found = field_of(config, name)
    if default is _FIELD_DEFAULT:
        default = found.default if found.default is not dataclasses.MISSING else found.default_factory()
    return typer.Option(default, *flags, help=found.metadata["help"], **settings)


def _argument(config: type, name: str) -> Any:
    """A required typer argument for field ``name`` of settings class ``config``, with the field's help."""
    return typer.Argument(..., help=help_of(config, name))


protocols_app = typer.Typer(help="List, show and validate protocols.", no_args_is_help=True)
app.add_typer(protocols_app, name="protocols")


def _load_config_file(ctx: typer.Context, value: Optional[Path]) -> Optional[Path]:
    """--config: the file's values become the command's defaults, so flags given still win."""
    if value is None:
        return None
    from .config_files import normalize, read_config_file

    options = {p.name: bool(getattr(p, "multiple", False) or p.nargs == -1) for p in ctx.command.params
               if p.name != "config" and not getattr(p, "hidden", False) and p.name != "help"}
    try:
        values = normalize(read_config_file(value), options, value)
    except SparringError as error:
        raise typer.BadParameter(str(error), param_hint="--config") from None
    params = {p.name: p for p in ctx.command.params}
    for name, given in values.items():
        try:  # typer's own conversion, so a bad value names the file now rather than the flag later
            params[name].get_runtime_param().coerce(given, param=params[name], ctx=ctx)
        except typer.BadParameter as error:
            raise typer.BadParameter(f"{value}: {name.rstrip('_')}: {error.message}", param_hint="--config") from None
    ctx.default_map = {**(ctx.default_map or {}), **values}
    return value


CONFIG_OPTION = typer.Option(
    None, "--config", "-c", is_eager=True, callback=_load_config_file, dir_okay=False,
    help="A YAML file of this command's options (keys as the option names: eval_games or eval-games); flags "
         "given win over it. The settings a run used are written to its directory as run_config.yaml.")


REPORT_TO_OPTION = typer.Option(
    "none", "--report-to",
    help="Also log metrics to none, tensorboard, wandb or trackio (comma-separated; all: every one installed; "
         "train also takes transformers' other integrations): game metrics with win rates and intervals (selfplay: "
         "per epoch) and TRL's training metrics. TensorBoard files go to OUT/tensorboard/ (train: OUTPUT/runs/). "
         "See docs/training.md.")


def _tracker(report_to: str, ctx: typer.Context, out: Path):
    """The trackers of ``--report-to`` for a run in ``out``, opened (`TrackingError` when one is missing)."""
    from .tracking import open_tracker

    settings = {k: v for k, v in ctx.params.items() if k != "config"}
    command = ctx.command_path.removeprefix(ctx.find_root().info_name or "").strip()
    return open_tracker(report_to, out, config=settings, name=f"{command} {out}")


def _write_config(ctx: typer.Context, folder: Path) -> None:
    """Write the effective settings (defaults, --config file, flags) to FOLDER/run_config.yaml."""
    from .config_files import write_effective_config

    write_effective_config(folder, {k: v for k, v in ctx.params.items() if k != "config"},
                           ctx.command_path.removeprefix(ctx.find_root().info_name or "").strip())


def _progress():
    """A transient progress bar on the CLI's console, or plain lines where it is no terminal (`sparring.progress`)."""
    from .progress import progress_display

    return progress_display(console)


def _line_printer(target: Console):
    """A ``report`` callback printing each line to ``target`` as it is (soft_wrap: a line stays one
    line in a log; a terminal wraps it where it must)."""
    return lambda line: target.print(line, highlight=False, soft_wrap=True)


def _bar_hooks(progress, description: str) -> dict:
    """``on_start``/``on_episode`` hooks that drive one bar of ``progress`` (its total told at the start)."""
    task = progress.add_task(description, total=None)
    return {"on_start": lambda total: progress.update(task, total=total),
            "on_episode": lambda _: progress.advance(task)}


def _reports_errors(command):
    """A command whose sparring errors end it with a one-line message and exit code 1 (see `_fail`)."""

    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except SparringError as error:
            raise _fail(error) from None

    return run


def _fail(error: SparringError) -> typer.Exit:
    from rich.markup import escape

    errors.print(f"[bold red]error:[/] {escape(str(error))}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(1)


@app.command()
@_reports_errors
def models() -> None:
    """List the known model specs and whether each is available on this machine."""
    from rich.markup import escape

    from .agents._catalog import known_models

    table = Table("spec", "model", "available here")
    for entry in known_models():
        table.add_row(escape(entry.spec), escape(entry.description),
                      "[green]yes[/]" if entry.available else f"[red]no[/]: {escape(entry.note)}")
    console.print(table)


@app.command()
@_reports_errors
def chat(
    message: str = typer.Argument(..., help="What the user says."),
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m", help=MODEL_HELP),
    system: Optional[str] = typer.Option(None, help="A system prompt."),
    temperature: float = typer.Option(0.7, min=0, help="0 for greedy decoding."),
    top_p: float = typer.Option(1.0, min=0, max=1, help="Nucleus sampling mass."),
    max_tokens: int = typer.Option(256, min=1, help="New tokens at most."),
    seed: Optional[int] = typer.Option(None, help="Seed for reproducible sampling."),
    stream: bool = typer.Option(True, help="Print the reply as it is generated."),
) -> None:
    """Send one message to a model and print its reply."""
    import asyncio

    from autogen_core.models import SystemMessage, UserMessage

    from .agents import model_client

    async def run() -> None:
        client = model_client(model, temperature=temperature, top_p=top_p, max_tokens=max_tokens, seed=seed)
        messages = ([SystemMessage(content=system)] if system else []) + [UserMessage(content=message, source="user")]
        if not stream:
            console.print((await client.create(messages)).content, markup=False, highlight=False)
            return
        async for item in client.create_stream(messages):
            if isinstance(item, str):
                sys.stdout.write(item)
                sys.stdout.flush()
        sys.stdout.write("\n")

    asyncio.run(run())


@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@_reports_errors
def serve(
    ctx: typer.Context,
    model: str = typer.Option(DEFAULT_MODEL, "--model", "-m",
                              help="embedded: an hf: spec. vllm: an hf: spec without +ADAPTER, a hub id or a model directory."),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 exposes the server to the network."),
    name: Optional[str] = typer.Option(None, help="Model name clients send (default: the spec; vllm: the model)."),
    engine: str = typer.Option("embedded", "--engine", "-e",
                               help="embedded: sparring's engine in this process (CPU or GPU). "
                                    "vllm: launch `vllm serve` (GPU; pip install 'sparring\\[vllm]')."),
    lora: List[str] = typer.Option([], "--lora", help="vllm: NAME=ADAPTER_DIR, a LoRA adapter served as model NAME "
                                   "(repeatable; turns on --enable-lora)."),
    enable_lora: bool = typer.Option(False, "--enable-lora", help="vllm: serve with LoRA support even with no --lora."),
    tensor_parallel: int = typer.Option(1, "--tensor-parallel", min=1, help="vllm: GPUs to shard the model over."),
    startup_timeout: float = typer.Option(1800, min=1, help="vllm: seconds to wait for the server to become healthy."),
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions, /v1/completions, /health).

    With --engine vllm, sparring launches `vllm serve`, waits until it is healthy,
    prints the spec to play against it, and stops it on Ctrl-C.
    Arguments after `--` go to `vllm serve` as they are, e.g.
    `sparring serve -e vllm -m Qwen/Qwen2.5-7B-Instruct -- --gpu-memory-utilization 0.8`.
    """
    from .serving._launch import ENGINES, serve as serve_model

    if engine not in ENGINES:
        raise typer.BadParameter(f"{engine!r} is not an engine: use embedded or vllm", param_hint="--engine")

    def ready(served) -> None:
        if engine == "embedded":
            console.print(f"serving [bold]{served.name}[/] at {served.url} (spec for sparring: "
                          f"{served.specs[served.name]})", highlight=False)
            return
        console.print(f"vLLM is serving [bold]{served.name}[/] at {served.url}; play against it with", highlight=False)
        for adapter, spec in served.specs.items():
            note = f"   (adapter {loras[adapter]})" if adapter in loras else ""
            console.print(f"  --model {spec}{note}", highlight=False, markup=False)
        console.print("Ctrl-C stops it.", highlight=False)

    loras = _pairs(lora, "--lora")
    code = serve_model(model, host, port, name=name, engine=engine, loras=loras, enable_lora=enable_lora,
                       tensor_parallel=tensor_parallel, extra=list(ctx.args), startup_timeout=startup_timeout,
                       on_ready=ready,
                       on_command=lambda command: errors.print(f"starting: {' '.join(command)}", highlight=False,
                                                               markup=False))
    raise typer.Exit(code)


def _pairs(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=option)
        pairs[key] = value
    return pairs


def _yaml_value(text: str, option: str):
    """A command-line value read as YAML (``3`` is a number, ``{a: 1}`` a mapping)."""
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        raise typer.BadParameter(f"{text!r} is not a YAML value: {getattr(error, 'problem', error)}; quote text "
                                 "that is not meant as YAML", param_hint=option) from None


def _print_summary(summary) -> None:
    table = Table("outcome", "episodes", "share", title=f"{summary.protocol}: {summary.games} episodes")
    judged = summary.games - summary.errors
    for reason, count in summary.reasons.most_common():
        table.add_row(reason, str(count), f"{count / judged:.0%}" if judged else "-")
    if summary.errors:
        table.add_row("[red]error[/]", str(summary.errors), f"{summary.errors / summary.games:.0%}")
    console.print(table)
    wins = Table("role", "wins", "win rate")
    for role in summary.roles:
        wins.add_row(role, str(summary.wins[role]), f"{summary.wins[role] / judged:.0%}" if judged else "-")
    console.print(wins)
    decisive = f"{summary.decisive}/{judged} decisive ({summary.decisive / judged:.0%})" if judged else "no episodes"
    speed = f"{summary.tokens_per_second:.1f} tok/s, {60 * summary.games / summary.seconds:.1f} episodes/min" if summary.seconds else ""
    skipped = f", {summary.skipped} already done" if summary.skipped else ""
    console.print(f"{decisive}{skipped}. {speed}", highlight=False)
    if summary.other_versions:
        errors.print(f"note: {summary.other_versions} episode(s) kept from the earlier run were played under another "
                     f"version of {summary.protocol} (the protocol file changed since); `sparring judge` judges them "
                     "all again under this one", highlight=False, markup=False, soft_wrap=True)
    if summary.path is not None:
        console.print(f"transcripts: {summary.path}", highlight=False)


@app.command()
@_reports_errors
def play(
    ctx: typer.Context,
    protocol: str = _argument(PlayConfig, "protocol"),
    games: int = _setting(PlayConfig, "games", "--games", "-n", min=1),
    model: str = _setting(PlayConfig, "model", "--model", "-m"),
    role: List[str] = _setting(PlayConfig, "roles", "--role", default=[]),
    out: Path = _setting(PlayConfig, "out", "--out", "-o"),
    concurrency: int = _setting(PlayConfig, "concurrency", "--concurrency", min=1),
    seed: int = _setting(PlayConfig, "seed", "--seed"),
    resume: bool = _setting(PlayConfig, "resume", "--resume/--no-resume"),
    set_: List[str] = _setting(PlayConfig, "overrides", "--set", default=[]),
    allow_hooks: bool = _setting(PlayConfig, "allow_hooks", "--allow-hooks/--no-allow-hooks"),
    max_error_share: float = _setting(PlayConfig, "max_error_share", "--max-error-share", min=0, max=1),
    report_to: str = REPORT_TO_OPTION,
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Play episodes of a protocol; write transcripts; print outcomes, win rates and speed.

    An episode that fails (a backend that keeps failing, a rule or template that raises) is
    written with status error and the run goes on; `--resume` later replays the failed ones.
    """
    import asyncio

    from .protocols import check_play, load_protocol, play as play_protocol, role_models, what_to_fix
    from .tracking import play_metrics, trackers

    trackers(report_to)  # a missing tracker package fails here, before any episode
    loaded = load_protocol(protocol)
    models = role_models(loaded, model, _pairs(role, "--role"))
    _check_models(*models.values())
    overrides = {k: _yaml_value(v, f"--set {k}") for k, v in _pairs(set_, "--set").items()}
    check_play(loaded, out, overrides, seed, resume)  # nor is the run_config.yaml of a run in OUT replaced
    _write_config(ctx, out)
    with _tracker(report_to, ctx, out) as tracker, _progress() as progress:
        task = progress.add_task(f"playing {loaded.name}", total=games)
        failures: list[str] = []

        def on_episode(episode) -> None:
            progress.advance(task)
            if episode.status == "error":
                failures.append(episode.error)

        summary = asyncio.run(play_protocol(
            loaded, games, out, models, concurrency=concurrency, seed=seed, resume=resume,
            overrides=overrides, allow_hooks=allow_hooks, on_episode=on_episode))
        if tracker.names:  # the run's transcripts counted as selfplay counts an epoch's (epoch.json's play)
            from .trainer import play_stats

            tracker.log(play_metrics(play_stats(summary.path, loaded.spec.training.drop_reasons), summary.roles),
                        step=0)
    _print_summary(summary)
    _check_errors(summary.errors, summary.games, failures, max_error_share, what_to_fix(loaded, failures))


def _check_models(*specs: str) -> None:
    """Refuse a bad model spec (one carrying a key, an hf: model or adapter not there) before anything is played."""
    from .agents import ModelSpec

    for spec in sorted(set(specs)):
        ModelSpec.parse(spec).check_present()


def _all_failed(failed: int, total: int, transcripts: Path) -> None:
    """Exit with code 2 when every episode failed, naming the first error (the rates mean nothing then)."""
    if not total or failed < total:
        return
    from .transcripts import first_error

    first = first_error(transcripts)
    errors.print(f"error: all {total} episodes failed" + (f"; first error: {first}" if first else "")
                 + f" (transcripts: {transcripts}). Fix that, then run again with --resume to replay them.",
                 highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(2)


def _check_errors(failed: int, played: int, failures: list[str], max_share: float, fix: str) -> None:
    """Report failed episodes; exit with code 2 when their share is above ``max_share``, saying ``fix``."""
    from .protocols import too_many_errors

    if not failed:
        return
    share = failed / played
    first = f"first error: {failures[0]}" if failures else ""
    if not too_many_errors(failed, played, max_share):
        errors.print(f"warning: {failed} of {played} episodes failed ({share:.0%}); {first}", highlight=False,
                     markup=False, soft_wrap=True)
        return
    errors.print(f"error: {failed} of {played} episodes failed ({share:.0%}), more than --max-error-share "
                 f"{max_share:.0%}; {first}. {fix[:1].upper()}{fix[1:]}, then run again with --resume to replay them.",
                 highlight=False, markup=False, soft_wrap=True)
    raise typer.Exit(2)


@app.command()
@_reports_errors
def judge(
    protocol: str = typer.Argument(..., help="A built-in protocol name or a protocol .yaml file."),
    transcripts: Path = typer.Argument(..., help="A transcripts .jsonl file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the re-judged episodes here "
                                          "(not the input file; replaced in one step when done)."),
    allow_hooks: bool = typer.Option(False, help="Run a Python judge hook the protocol names."),
    force: bool = typer.Option(False, help="Also judge records played under another protocol."),
    overwrite: bool = typer.Option(False, help="Replace an --output file that already holds data."),
) -> None:
    """Re-judge logged episodes with a protocol's current rules and print the summary.

    Each id is judged once (its latest record), on the messages the protocol's schedule allows.
    An episode the judge fails on is written with status error; the command then exits with code 2.
    """
    from .protocols import load_protocol, rejudge

    loaded = load_protocol(protocol)
    with _progress() as progress:
        summary = rejudge(loaded, transcripts, output, allow_hooks, force=force, overwrite=overwrite,
                          **_bar_hooks(progress, f"judging {transcripts.name}"))
    _print_summary(summary)
    notes = []
    if summary.malformed:
        notes.append(f"skipped {summary.malformed} malformed line(s) of {transcripts}")
    if summary.duplicates:
        notes.append(f"dropped {summary.duplicates} earlier record(s) of ids that occur again; judged the latest")
    if summary.capped:
        cap = loaded.spec.schedule.max_messages()
        notes.append(f"{summary.capped} episode(s) go on past where {loaded.name}'s schedule ends (at most {cap} "
                     "messages, and its `until`): judged up to there; the rest are kept unjudged")
    for note in notes:
        errors.print(f"note: {note}", highlight=False, markup=False, soft_wrap=True)
    if summary.failures:
        errors.print(f"error: {len(summary.failures)} episode(s) could not be judged and were written with status "
                     f"error; first: {summary.failures[0]}. Fix the protocol's rules (or those records) and judge "
                     f"again.", highlight=False, markup=False, soft_wrap=True)
        raise typer.Exit(2)


@app.command()
@_reports_errors
def debate(
    ctx: typer.Context,
    questions: str = _setting(QAConfig, "questions", "--questions", "-q", default="arithmetic"),
    agents: int = _setting(QAConfig, "agents", "--agents", min=1),
    rounds: int = _setting(QAConfig, "rounds", "--rounds", min=1),
    model: str = _setting(QAConfig, "model", "--model", "-m", default=DEFAULT_MODEL),
    limit: Optional[int] = _setting(QAConfig, "limit", "--limit", "-n", min=1),
    out: Path = _setting(QAConfig, "out", "--out", "-o", default=Path("runs/debate")),
    concurrency: int = _setting(QAConfig, "concurrency", "--concurrency", min=1),
    seed: int = _setting(QAConfig, "seed", "--seed"),
    resume: bool = _setting(QAConfig, "resume", "--resume/--no-resume"),
) -> None:
    """Multi-agent debate (Du et al. 2023) against its baselines on the same questions.

    Baselines: one agent, a majority vote, and one agent reflecting for as many rounds (Du et al.'s reflection).

    The same as `sparring eval qa --debate` (with its defaults for the questions and the model).
    """
    _answer(ctx, questions, model, out, debate=True, agents=agents, rounds=rounds, limit=limit, seed=seed,
            concurrency=concurrency, resume=resume, report_to="none")


@protocols_app.command("list")
@_reports_errors
def protocols_list() -> None:
    """List the built-in protocols."""
    from .protocols import builtin_names, load_protocol

    table = Table("name", "roles", "description")
    for name in builtin_names():
        spec = load_protocol(name).spec
        table.add_row(name, ", ".join(spec.roles), spec.description.strip())
    console.print(table)
    console.print("TextArena's games too, as textarena:ENV_ID (e.g. textarena:TicTacToe-v0; "
                  "pip install 'sparring[textarena]')", highlight=False)


@protocols_app.command("show")
@_reports_errors
def protocols_show(name: str = typer.Argument(..., help="A built-in protocol name, a .yaml file or textarena:ENV_ID.")) -> None:
    """Print a protocol's YAML, exactly as it is (``sparring protocols show NAME > my_game.yaml`` copies it)."""
    from .protocols import load_protocol

    text = load_protocol(name).text
    sys.stdout.write(text if text.endswith("\n") else text + "\n")  # not through rich: it would wrap lines


@protocols_app.command("validate")
@_reports_errors
def protocols_validate(file: Path = typer.Argument(..., help="A protocol .yaml file.")) -> None:
    """Check a protocol file: schema, roles, templates and rule expressions."""
    from .protocols import load_protocol

    loaded = load_protocol(file)
    console.print(f"{file}: ok ({loaded.name}, roles {', '.join(loaded.spec.roles)})", highlight=False)


# --- data -------------------------------------------------------------------------------------

data_app = typer.Typer(help="Build training datasets from judged transcripts.", no_args_is_help=True)
app.add_typer(data_app, name="data")


@data_app.command("build")
@_reports_errors
def data_build(
    kind: str = _argument(DataConfig, "kind"),
    transcripts: List[Path] = _argument(DataConfig, "transcripts"),
    out: Path = _setting(DataConfig, "out", "--out", "-o", default=...),
    roles: List[str] = _setting(DataConfig, "roles", "--roles", default=[]),
    sft_data: Optional[Path] = _setting(DataConfig, "sft_data", "--sft-data"),
    protocol: Optional[str] = _setting(DataConfig, "protocol", "--protocol", "-p"),
    drop_reason: List[str] = _setting(DataConfig, "drop_reasons", "--drop-reason", default=[]),
    seed: int = _setting(DataConfig, "seed", "--seed"),
    vary_prompts: bool = _setting(DataConfig, "vary_prompts", "--vary-prompts/--no-vary-prompts"),
    overwrite: bool = _setting(DataConfig, "overwrite", "--overwrite/--no-overwrite"),
) -> None:
    """Turn judged transcripts into a dataset: OUT holds the Hugging Face dataset, data.jsonl and summary.json.

    Rows are chats whose last message is the trained turn, with role, reward, weight, type
    (game or sft) and episode_id. spag keeps decisive games only (ties, errors and dropped
    reasons are left out): the winner's turns get rewards growing by 1/0.8 per turn, summing
    to 1 per game, and each role's samples the weight n_decisive / (2 * n_role_wins).
    """
    from .data import build_dataset

    with console.status(f"building {kind} data"):
        summary = build_dataset(kind, transcripts, out, roles=list(roles) or None, sft_data=sft_data,
                                protocol=protocol, seed=seed, drop_reasons=list(drop_reason) or None,
                                vary_prompts=vary_prompts if kind == "spag" else None, overwrite=overwrite)
    for warning in summary.warnings:
        errors.print(f"warning: {warning}", highlight=False, markup=False)
    table = Table("", "count", title=f"{kind} data from {summary.episodes} episodes")
    table.add_row("games used", str(summary.games_used))
    for reason, count in sorted(summary.dropped.items(), key=lambda item: -item[1]):
        table.add_row(f"dropped: {reason}", str(count))
    for role, count in sorted(summary.role_rows.items()):
        weight = f" (weight {summary.weights[role]:.3g})" if role in summary.weights else ""
        table.add_row(f"rows: {role}{weight}", str(count))
    if summary.gold_rows:
        table.add_row("rows: gold rationales (in the learner's)", str(summary.gold_rows))
    if summary.sft_rows:
        table.add_row("rows: sft", str(summary.sft_rows))
    table.add_row("[bold]rows[/]", f"[bold]{summary.rows}[/]")
    console.print(table)
    console.print(f"dataset: {summary.output}" + ("" if summary.rows else " (no rows: nothing to train on)"),
                  highlight=False)


# --- selfplay ---------------------------------------------------------------------------------


@app.command()
@_reports_errors
def selfplay(
    ctx: typer.Context,
    protocol: str = _setting(SelfPlayConfig, "protocol", "--protocol", "-p"),
    model: str = _setting(SelfPlayConfig, "model", "--model", "-m"),
    epochs: int = _setting(SelfPlayConfig, "epochs", "--epochs", "-e", min=1),
    games: int = _setting(SelfPlayConfig, "games", "--games", "-n", min=1),
    out: Path = _setting(SelfPlayConfig, "out", "--out", "-o"),
    eval_games: int = _setting(SelfPlayConfig, "eval_games", "--eval-games", min=0),
    eval_questions: Optional[str] = _setting(SelfPlayConfig, "eval_questions", "--eval-questions"),
    kind: Optional[str] = _setting(SelfPlayConfig, "kind", "--kind"),
    set_: List[str] = _setting(SelfPlayConfig, "overrides", "--set", default=[]),
    warmup: int = _setting(SelfPlayConfig, "warmup", "--warmup", min=0),
    partner: Optional[str] = _setting(SelfPlayConfig, "partner", "--partner"),
    imitation: List[Path] = _setting(SelfPlayConfig, "imitation", "--imitation", default=[]),
    sft_data: Optional[Path] = _setting(SelfPlayConfig, "sft_data", "--sft-data"),
    holdout: List[str] = _setting(SelfPlayConfig, "holdout", "--holdout", default=[]),
    seed: int = _setting(SelfPlayConfig, "seed", "--seed"),
    concurrency: int = _setting(SelfPlayConfig, "concurrency", "--concurrency", min=1),
    max_steps: Optional[int] = _setting(TrainConfig, "max_steps", "--max-steps", default=None),
    train_epochs: Optional[float] = _setting(TrainConfig, "epochs", "--train-epochs", default=None),
    lr: Optional[float] = _setting(TrainConfig, "lr", "--lr"),
    lora_r: Optional[int] = _setting(TrainConfig, "lora_r", "--lora-r", min=1),
    lora_alpha: Optional[int] = _setting(TrainConfig, "lora_alpha", "--lora-alpha", min=1),
    full: bool = _setting(TrainConfig, "full", "--full/--no-full"),
    preset: Optional[str] = typer.Option(None, "--preset", help=PRESET_HELP + " The imitation stage takes the "
                                         "matching imitation preset (spag -> spag-imitation)."),
    lr_scheduler: Optional[str] = _setting(TrainConfig, "lr_scheduler", "--lr-scheduler", default=None),
    warmup_ratio: Optional[float] = _setting(TrainConfig, "warmup_ratio", "--warmup-ratio", default=None, min=0),
    batch_size: Optional[int] = _setting(TrainConfig, "batch_size", "--batch-size", default=None, min=1),
    grad_accum: Optional[int] = _setting(TrainConfig, "grad_accum", "--grad-accum", default=None, min=1),
    kl_coeff: Optional[float] = _setting(TrainConfig, "kl_coeff", "--kl-coeff", min=0),
    sft_coeff: Optional[float] = _setting(TrainConfig, "sft_coeff", "--sft-coeff", default=None, min=0),
    clip_range: Optional[float] = _setting(TrainConfig, "clip_range", "--clip-range", default=None, min=0),
    bench_tasks: Optional[str] = _setting(SelfPlayConfig, "bench_tasks", "--bench-tasks", default=None),
    bench_limit: Optional[int] = _setting(SelfPlayConfig, "bench_limit", "--bench-limit", min=1),
    bench_include_path: Optional[Path] = _setting(SelfPlayConfig, "bench_include_path", "--bench-include-path",
                                                  file_okay=False),
    report_to: str = REPORT_TO_OPTION,
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """SPAG self-play (or the SAIE loop): each epoch plays, judges, builds data, trains and evaluates.

    Everything lands under OUT/epoch_K/; running the same command again resumes where it stopped.
    """
    from .trainer import SelfPlay, SelfPlayConfig, final_verdict

    train = {"max_steps": max_steps, "epochs": train_epochs, "lr": lr, "lora_r": lora_r, "lora_alpha": lora_alpha,
             "full": full or None, "batch_size": batch_size, "grad_accum": grad_accum, "kl_coeff": kl_coeff,
             "sft_coeff": sft_coeff, "clip_range": clip_range, "lr_scheduler": lr_scheduler,
             "warmup_ratio": warmup_ratio}
    overrides = {k: _yaml_value(v, f"--set {k}") for k, v in _pairs(set_, "--set").items()}
    config = SelfPlayConfig(
        protocol=protocol, model=model, out=out, epochs=epochs, games=games, eval_games=eval_games,
        overrides=overrides, warmup=warmup,
        eval_questions=eval_questions, kind=kind, partner=partner, imitation=[str(p) for p in imitation],
        sft_data=str(sft_data) if sft_data else None, holdout=list(holdout) or None, seed=seed,
        concurrency=concurrency, train={k: v for k, v in train.items() if v is not None}, preset=preset,
        bench_tasks=[bench_tasks] if bench_tasks else [], bench_limit=bench_limit,
        bench_include_path=str(bench_include_path) if bench_include_path else None, report_to=report_to)
    with _progress() as progress:
        tasks: dict[str, int] = {}

        def on_episode(stage: str, total: int) -> None:
            if total:
                tasks[stage] = progress.add_task(stage, total=total)
            else:
                progress.advance(tasks[stage])

        runner = SelfPlay(config, report=_line_printer(progress.console), on_episode=on_episode)  # checks the inputs
        _write_config(ctx, out)
        records = runner.run()
    console.print(f"run directory: {out} (report: sparring report {out})", highlight=False)
    console.print(final_verdict(records), highlight=False, markup=False, soft_wrap=True)


# --- eval ---------------------------------------------------------------------------------------

eval_app = typer.Typer(help="Evaluate models: win rates between two models, accuracy on question sets, "
                            "lm-evaluation-harness benchmarks.",
                       no_args_is_help=True)
app.add_typer(eval_app, name="eval")


def _with_ci(rate: float, ci) -> str:
    return f"{rate:.0%} [{ci[0]:.0%}, {ci[1]:.0%}]"


@eval_app.command("winrate")
@_reports_errors
def eval_winrate_command(
    ctx: typer.Context,
    protocol: str = _setting(WinRateConfig, "protocol", "--protocol", "-p", default=...),
    model: str = _setting(WinRateConfig, "model", "--model", "-m", default=...),
    opponent: str = _setting(WinRateConfig, "opponent", "--opponent", default=...),
    games: int = _setting(WinRateConfig, "games", "--games", "-n", min=1),
    out: Path = _setting(WinRateConfig, "out", "--out", "-o"),
    seed: int = _setting(WinRateConfig, "seed", "--seed"),
    concurrency: int = _setting(WinRateConfig, "concurrency", "--concurrency", min=1),
    resume: bool = _setting(WinRateConfig, "resume", "--resume/--no-resume"),
    exclude: List[str] = _setting(WinRateConfig, "exclude", "--exclude", default=[]),
    report_to: str = REPORT_TO_OPTION,
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Win, loss and tie rates of --model against --opponent, with both role assignments and 95% intervals.

    Half the games put --model in the protocol's first role (e.g. the attacker), half in the others.

    Rates count the games that ended without an error; intervals are Wilson score intervals.
    """
    import asyncio

    from .evaluation import eval_winrate

    held_out: dict[str, set] = {}
    for item in exclude:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected VAR=VALUE, got {item!r}", param_hint="--exclude")
        held_out.setdefault(key, set()).add(value)
    from .tracking import trackers, winrate_metrics

    trackers(report_to)  # a missing tracker package fails here, before any game
    _check_models(model, opponent)
    _write_config(ctx, out)
    with _tracker(report_to, ctx, out) as tracker, _progress() as progress:
        task = progress.add_task(f"{protocol}: {model} vs {opponent}", total=games)
        result = asyncio.run(eval_winrate(protocol, model, opponent, games, out, seed=seed, exclude=held_out or None,
                                          concurrency=concurrency, resume=resume,
                                          on_episode=lambda _: progress.advance(task)))
        tracker.log(winrate_metrics(result.to_dict()), step=0)
    total = result.total
    table = Table("outcome", "games", "rate [95% CI]", title=f"{result.protocol}: {model} vs {opponent}")
    table.add_row("win", str(total.wins), _with_ci(result.win_rate, result.win_ci))
    table.add_row("loss", str(total.losses), _with_ci(result.loss_rate, result.loss_ci))
    table.add_row("tie", str(total.ties), _with_ci(result.tie_rate, result.tie_ci))
    if total.errors:
        table.add_row("[red]error[/] (not in rates)", str(total.errors), "-")
    console.print(table)
    roles = Table("model's role", "games", "wins", "losses", "ties", "errors")
    for role, tally in result.by_role.items():
        roles.add_row(role, str(tally.games), str(tally.wins), str(tally.losses), str(tally.ties), str(tally.errors))
    console.print(roles)
    console.print(f"transcripts: {result.path}\nresult: {out / 'winrate.json'}", highlight=False)
    _all_failed(total.errors, total.games, result.path)


@eval_app.command("qa")
@_reports_errors
def eval_qa_command(
    ctx: typer.Context,
    questions: str = _setting(QAConfig, "questions", "--questions", "-q", default=...),
    model: str = _setting(QAConfig, "model", "--model", "-m", default=...),
    debate: bool = _setting(QAConfig, "debate", "--debate/--no-debate"),
    agents: int = _setting(QAConfig, "agents", "--agents", min=1),
    rounds: int = _setting(QAConfig, "rounds", "--rounds", min=1),
    limit: Optional[int] = _setting(QAConfig, "limit", "--limit", "-n", min=1),
    out: Path = _setting(QAConfig, "out", "--out", "-o"),
    seed: int = _setting(QAConfig, "seed", "--seed"),
    concurrency: int = _setting(QAConfig, "concurrency", "--concurrency", min=1),
    resume: bool = _setting(QAConfig, "resume", "--resume/--no-resume"),
    report_to: str = REPORT_TO_OPTION,
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Accuracy of --model on a question set with a 95% interval; with --debate, single agent and debate side by side."""
    _answer(ctx, questions, model, out, debate=debate, agents=agents, rounds=rounds, limit=limit, seed=seed,
            concurrency=concurrency, resume=resume, report_to=report_to)


def _answer(ctx: typer.Context, questions: str, model: str, out: Path, *, debate: bool, agents: int, rounds: int,
            limit: Optional[int], seed: int, concurrency: int, resume: bool, report_to: str) -> None:
    """`eval qa` and `debate`: score the methods, print them with their intervals, log them to the trackers."""
    import asyncio

    from .evaluation import eval_qa
    from .tracking import accuracy_metrics, trackers

    trackers(report_to)  # a missing tracker package fails here, before any question
    _check_models(model)
    _write_config(ctx, out)
    with _tracker(report_to, ctx, out) as tracker, _progress() as progress:
        hooks = _bar_hooks(progress, f"answering {questions}" + (f" ({agents} agents x {rounds} rounds)"
                                                                 if debate else ""))
        result = asyncio.run(eval_qa(questions, model, out, debate=debate, agents=agents, rounds=rounds,
                                     limit=limit, seed=seed, concurrency=concurrency, resume=resume, **hooks))
        tracker.log(accuracy_metrics(result.to_dict()), step=0)
    names = {"single_agent": "single agent", "majority_vote": f"majority vote of {agents}, no debate",
             "debate": f"debate, {agents} agents x {rounds} rounds", "reflection": f"reflection, 1 agent x {rounds} rounds"}
    table = Table("method", "correct", "accuracy [95% CI]", title=f"{result.questions} questions, {model}")
    for name, score in result.methods.items():
        table.add_row(names[name], f"{score.correct}/{score.total}", _with_ci(score.accuracy, score.ci))
    console.print(table)
    if result.errors:
        errors.print(f"{result.errors} question(s) failed and were not scored", highlight=False)
    console.print(f"transcripts: {result.path}\nresult: {out / 'accuracy.json'}", highlight=False)


@eval_app.command("compare")
@_reports_errors
def eval_compare_command(
    first: Path = typer.Argument(..., help="A self-play run of the SAIE kind (its last evaluated epoch), one of its "
                                 "epoch_K folders, or an eval/ or baseline/ folder."),
    second: Path = typer.Argument(..., help="The same for the model to compare against (e.g. the plain-SFT run)."),
    role: str = typer.Option("learner", "--role", help="The role whose answers were evaluated."),
) -> None:
    """Is FIRST's learner better than SECOND's on the same held-out questions? McNemar's exact test.

    Compares two learner-alone evaluations (what `selfplay -p saie` writes after each epoch, and
    its start model's baseline/), question by question: e.g. SAIE against plain SFT on gold
    rationales, `sparring eval compare runs/saie-both runs/saie-sft`. Writes nothing.
    """
    from .evaluation import compare_learner_evals

    result = compare_learner_evals(first, second, role)
    console.print(f"first: {result['first']}\nsecond: {result['second']}", highlight=False, soft_wrap=True)
    table = Table("", "first", "second", title=f"{result['questions']} questions answered in both")
    table.add_row("correct", str(result["trained_correct"]), str(result["baseline_correct"]))
    table.add_row("right only here", str(result["only_trained"]), str(result["only_baseline"]))
    console.print(table)
    console.print(f"first against second: {result['verdict']}", highlight=False)


@eval_app.command("bench")
@_reports_errors
def eval_bench_command(
    ctx: typer.Context,
    model: str = _setting(BenchConfig, "model", "--model", "-m", default=...),
    tasks: str = _setting(BenchConfig, "tasks", "--tasks", "-t", default=...),
    limit: Optional[int] = _setting(BenchConfig, "limit", "--limit", "-n", min=1),
    out: Path = _setting(BenchConfig, "out", "--out", "-o"),
    include_path: Optional[Path] = _setting(BenchConfig, "include_path", "--include-path", file_okay=False),
    num_fewshot: Optional[int] = _setting(BenchConfig, "num_fewshot", "--num-fewshot", min=0),
    batch_size: str = _setting(BenchConfig, "batch_size", "--batch-size"),
    tokenizer: Optional[str] = _setting(BenchConfig, "tokenizer", "--tokenizer"),
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Score a model on lm-evaluation-harness tasks (e.g. SPAG's reasoning benchmarks); write OUT/bench.json.

    Prints task / metric / value ± standard error. lm-eval reads public tasks' data from the
    Hugging Face hub; tasks of your own (--include-path) need no network. See docs/training.md.
    """
    from rich.markup import escape

    from .evaluation._bench import bench_rows, run_bench

    _write_config(ctx, out)
    result = run_bench(model, tasks, out, limit=limit, include_path=include_path, num_fewshot=num_fewshot,
                       batch_size=batch_size, tokenizer=tokenizer,
                       on_status=lambda line: errors.print(f"{line} ...", highlight=False, markup=False))
    table = Table("task", "metric", "value ± stderr", "docs",
                  title=f"{result.model}: lm-eval {result.lm_eval_version}" + (f", --limit {limit}" if limit else ""))
    for row in bench_rows(result.to_dict()):
        samples = result.results[row.task].get("n_samples") or {}
        table.add_row(f"[bold]{escape(row.task)}[/] (group)" if row.group else escape(row.task), escape(row.metric),
                      row.text(), str(samples.get("effective", "–")))
    console.print(table)
    console.print(f"result: {result.path} ({result.seconds:.0f} s)", highlight=False)


# --- report -------------------------------------------------------------------------------------


@app.command()
@_reports_errors
def report(
    run_dir: Path = typer.Argument(..., help="A self-play run directory, or any directory with a transcripts.jsonl "
                                   "or bench.json files."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="The HTML file (FILE.html), or a folder to "
                                          "write report.html in, made if missing (default: RUN_DIR/report.html)."),
) -> None:
    """Write a self-contained HTML report (charts, epochs, transcripts) and the charts as PNG files.

    Win rate per epoch with 95% intervals, the evidence against the start model (per-role tests and a verdict,
    printed last), outcomes, turns, tokens, throughput, loss, SPAG training metrics, accuracy, transcripts, and the
    benchmark scores of every bench.json (`eval bench`, `selfplay --bench-tasks`); a directory of bench.json
    files alone is a report too.

    The page needs no server and no network; the PNGs go beside it (report.html -> report_files/).
    """
    from .report import build_report

    if output is None or output.is_dir() or output.suffix.lower() not in (".html", ".htm"):
        output = (output or run_dir) / "report.html"  # a folder, made below if missing
    summary = build_report(run_dir, output)
    for note in summary.missing:
        errors.print(f"note: {note}", highlight=False, markup=False)
    console.print(f"report: {summary.output}\ncharts (PNG): {summary.png_dir} ({len(summary.png_files)} files)",
                  highlight=False)
    if summary.verdict:
        console.print(summary.verdict, highlight=False, markup=False, soft_wrap=True)


# --- train --------------------------------------------------------------------------------------


@app.command()
@_reports_errors
def train(
    ctx: typer.Context,
    kind: str = _argument(TrainConfig, "kind"),
    data: Path = _setting(TrainConfig, "data", "--data", "-d", default=...),
    model: str = _setting(TrainConfig, "model", "--model", "-m", default=DEFAULT_MODEL),
    output: Path = _setting(TrainConfig, "output", "--output", "-o", default=...),
    lora_r: Optional[int] = _setting(TrainConfig, "lora_r", "--lora-r", min=1),
    lora_alpha: Optional[int] = _setting(TrainConfig, "lora_alpha", "--lora-alpha", min=1),
    full: bool = _setting(TrainConfig, "full", "--full"),
    preset: Optional[str] = typer.Option(None, "--preset", help=PRESET_HELP),
    epochs: Optional[float] = _setting(TrainConfig, "epochs", "--epochs", default=None),
    max_steps: int = _setting(TrainConfig, "max_steps", "--max-steps"),
    lr: Optional[float] = _setting(TrainConfig, "lr", "--lr"),
    lr_scheduler: Optional[str] = _setting(TrainConfig, "lr_scheduler", "--lr-scheduler", default=None),
    warmup_ratio: Optional[float] = _setting(TrainConfig, "warmup_ratio", "--warmup-ratio", default=None, min=0),
    batch_size: Optional[int] = _setting(TrainConfig, "batch_size", "--batch-size", default=None, min=1),
    grad_accum: Optional[int] = _setting(TrainConfig, "grad_accum", "--grad-accum", default=None, min=1),
    kl_coeff: Optional[float] = _setting(TrainConfig, "kl_coeff", "--kl-coeff", min=0),
    sft_coeff: Optional[float] = _setting(TrainConfig, "sft_coeff", "--sft-coeff", default=None, min=0),
    clip_range: Optional[float] = _setting(TrainConfig, "clip_range", "--clip-range", default=None, min=0),
    merge: bool = _setting(TrainConfig, "merge", "--merge"),
    report_to: str = REPORT_TO_OPTION,
    seed: int = _setting(TrainConfig, "seed", "--seed"),
    max_length: Optional[int] = _setting(TrainConfig, "max_length", "--max-length", default=None),
    regenerate: bool = typer.Option(False, "--regenerate",
                                    help="saie: before each pass after the first, replay the discussions with the "
                                    "updated learner and train on the new ones (--epochs passes)."),
    protocol: Optional[str] = typer.Option(None, "--protocol",
                                           help="--regenerate: the protocol to replay (default: the data's)."),
    config: Optional[Path] = CONFIG_OPTION,
) -> None:
    """Train a model on a dataset built from transcripts; write a PEFT adapter that plays as hf:BASE+OUTPUT.

    The loss is printed at each logging step. Runs the same under `accelerate launch` (DDP,
    DeepSpeed, FSDP: see docs/training.md), e.g.
    `accelerate launch --config_file sparring/trainer/configs/ddp.yaml -m sparring.cli train spag ...`.
    """
    from .trainer import TrainConfig, preset_settings
    from .trainer import train as run_training

    given = {"lora_r": lora_r, "lora_alpha": lora_alpha, "full": full or None, "epochs": epochs, "lr": lr,
             "lr_scheduler": lr_scheduler, "warmup_ratio": warmup_ratio, "batch_size": batch_size,
             "grad_accum": grad_accum, "kl_coeff": kl_coeff, "sft_coeff": sft_coeff, "clip_range": clip_range,
             "max_length": max_length}
    settings = preset_settings(preset) | {k: v for k, v in given.items() if v is not None}
    if lora_r is not None or lora_alpha is not None:
        settings["full"] = full  # a LoRA setting asks for LoRA, whatever the preset trains
    full = bool(settings.get("full"))
    config = TrainConfig(data=data, model=model, output=output, kind=kind, max_steps=max_steps, merge=merge,
                         report_to=report_to, seed=seed, **settings)
    if regenerate:
        from .trainer import train_saie_regenerated

        result = train_saie_regenerated(config, protocol, report=_line_printer(console))
    else:
        result = run_training(config)
    from accelerate import PartialState

    if not PartialState().is_main_process:
        return
    _write_config(ctx, result.output)
    loss = "n/a" if result.final_loss is None else f"{result.final_loss:.4f}"
    console.print(f"trained {result.steps} steps in {result.seconds:.0f} s, final loss {loss}\n"
                  f"{'model' if full else 'adapter'}: {result.output}"
                  + (f" (merged model: {result.output / 'merged'})" if merge else "")
                  + f"\nplay it with: --model {result.play_spec}", highlight=False, soft_wrap=True)


# --- import -----------------------------------------------------------------------------------

import_app = typer.Typer(help="Import games played by other tools as sparring transcripts.", no_args_is_help=True)
app.add_typer(import_app, name="import")


@import_app.command("spag")
@_reports_errors
def import_spag_command(
    file: Path = typer.Argument(..., help="A SPAG game file: a .json list (e.g. gpt4_game_top30k_results.json) "
                                "or .jsonl, records with history, target_word and max_turns."),
    out: Path = typer.Option(..., "--out", "-o", help="The transcripts .jsonl to write (replaced in one step when done)."),
    model: str = typer.Option("gpt-4", help="The model that played the games, logged as both roles' model."),
    overwrite: bool = typer.Option(False, help="Replace an --out file that already holds data."),
) -> None:
    """Turn SPAG's released games into adversarial_taboo_spag transcripts, judged by the official rules.

    Every message is kept; training (sparring data build, selfplay --imitation) uses a game only up
    to its deciding message, as SPAG's code does. A bad record stops the import before anything is
    written, naming the file, line and record.
    """
    from .importers import import_spag

    with _progress() as progress:
        summary = import_spag(file, out, model=model, overwrite=overwrite,
                              **_bar_hooks(progress, f"judging {file.name}'s games"))
    console.print(f"imported {summary.games} SPAG games from {file}", highlight=False)
    _print_summary(summary)
    if summary.capped:
        errors.print(f"note: {summary.capped} game(s) hold more than 10 messages: judged their first 10 (as SPAG "
                     "does); the rest are kept, never trained on", highlight=False, markup=False, soft_wrap=True)


def main() -> None:
    """Entry point of the `sparring` console script.

    A failure that is not one of sparring's own errors (a bug) is printed on one line too, with
    how to see its traceback (``SPARRING_DEBUG=1``).
    """
    import os

    try:
        app()
    except Exception as error:  # noqa: BLE001
        if os.environ.get("SPARRING_DEBUG"):
            raise
        errors.print(f"error: {type(error).__name__}: {error} (unexpected: this is a bug in sparring; run again "
                     "with SPARRING_DEBUG=1 to see the traceback)", markup=False, highlight=False, soft_wrap=True)
        sys.exit(1)


if __name__ == "__main__":
    main()
