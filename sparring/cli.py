"""The `sparring` command line: a thin layer that parses, calls the library and prints."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import List, Optional

import typer
from rich.console import Console
from rich.table import Table

from .errors import SparringError

app = typer.Typer(
    help="Language-model agents play games and discussions, and train on what they said.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
errors = Console(stderr=True)

MODEL_HELP = "Model spec: hf:smollm2-135m, hf:DIR, hf:FILE.gguf or hf:HUB/ID, optionally +ADAPTER_DIR."


protocols_app = typer.Typer(help="List, show and validate protocols.", no_args_is_help=True)
app.add_typer(protocols_app, name="protocols")


def _fail(error: SparringError) -> typer.Exit:
    errors.print(f"[bold red]error:[/] {error}", markup=True, highlight=False, soft_wrap=True)
    return typer.Exit(1)


@app.command()
def models() -> None:
    """List the known model specs and whether each is available on this machine."""
    from .agents._catalog import known_models

    table = Table("spec", "model", "available here")
    for entry in known_models():
        table.add_row(entry.spec, entry.description, "[green]yes[/]" if entry.available else f"[red]no[/]: {entry.note}")
    console.print(table)


@app.command()
def chat(
    message: str = typer.Argument(..., help="What the user says."),
    model: str = typer.Option("hf:smollm2-135m", "--model", "-m", help=MODEL_HELP),
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

    try:
        asyncio.run(run())
    except SparringError as error:
        raise _fail(error) from None


@app.command()
def serve(
    model: str = typer.Option("hf:smollm2-135m", "--model", "-m", help=MODEL_HELP),
    port: int = typer.Option(8000, "--port", "-p", min=1, max=65535, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 0.0.0.0 exposes the server to the network."),
    name: Optional[str] = typer.Option(None, help="Model name clients send (default: the spec)."),
) -> None:
    """Serve a model over an OpenAI-compatible HTTP API (/v1/models, /v1/chat/completions)."""
    from .agents import get_engine
    from .server import create_app

    try:
        engine = get_engine(model)
    except SparringError as error:
        raise _fail(error) from None
    import uvicorn

    served = name or engine.name
    console.print(f"serving [bold]{served}[/] at http://{host}:{port}/v1 "
                  f"(spec for sparring: openai:{served}@http://{host}:{port}/v1)", highlight=False)
    uvicorn.run(create_app(engine, served), host=host, port=port, log_level="warning")


def _pairs(items: list[str], option: str) -> dict[str, str]:
    pairs = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"expected NAME=VALUE, got {item!r}", param_hint=option)
        pairs[key] = value
    return pairs


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
    if summary.path is not None:
        console.print(f"transcripts: {summary.path}", highlight=False)


@app.command()
def play(
    protocol: str = typer.Argument(..., help="A built-in protocol name or a protocol .yaml file."),
    games: int = typer.Option(8, "--games", "-n", min=1, help="Episodes to play."),
    model: str = typer.Option("hf:smollm2-135m", "--model", "-m", help=MODEL_HELP),
    role: List[str] = typer.Option([], "--role", help="ROLE=SPEC: a model for one role (repeatable)."),
    out: Path = typer.Option(Path("runs/play"), "--out", "-o", help="Directory for transcripts.jsonl."),
    concurrency: int = typer.Option(32, min=1, help="Episodes in flight at once."),
    seed: int = typer.Option(0, help="Seed: the same seed gives the same episode ids and variables."),
    resume: bool = typer.Option(False, help="Continue a run in --out: skip episodes already written."),
    set_: List[str] = typer.Option([], "--set", help="VAR=VALUE: fix a variable (YAML value; repeatable)."),
    allow_hooks: bool = typer.Option(False, help="Run a Python judge hook the protocol names."),
) -> None:
    """Play episodes of a protocol; write transcripts; print outcomes, win rates and speed."""
    import asyncio

    import yaml
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from .protocols import load_protocol, play as play_protocol, role_models

    try:
        loaded = load_protocol(protocol)
        models = role_models(loaded, model, _pairs(role, "--role"))
        overrides = {k: yaml.safe_load(v) for k, v in _pairs(set_, "--set").items()}
        columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn()]
        with Progress(*columns, console=console, transient=True) as progress:
            task = progress.add_task(f"playing {loaded.name}", total=games)
            summary = asyncio.run(play_protocol(
                loaded, games, out, models, concurrency=concurrency, seed=seed, resume=resume,
                overrides=overrides, allow_hooks=allow_hooks, on_episode=lambda _: progress.advance(task)))
    except SparringError as error:
        raise _fail(error) from None
    _print_summary(summary)


@app.command()
def judge(
    protocol: str = typer.Argument(..., help="A built-in protocol name or a protocol .yaml file."),
    transcripts: Path = typer.Argument(..., help="A transcripts .jsonl file."),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="Write the re-judged episodes here."),
    allow_hooks: bool = typer.Option(False, help="Run a Python judge hook the protocol names."),
) -> None:
    """Re-judge logged episodes with a protocol's current rules and print the summary."""
    from .protocols import load_protocol, rejudge

    try:
        summary = rejudge(load_protocol(protocol), transcripts, output, allow_hooks)
    except SparringError as error:
        raise _fail(error) from None
    _print_summary(summary)
    if summary.skipped:
        errors.print(f"skipped {summary.skipped} malformed line(s) of {transcripts}", highlight=False)


@app.command()
def debate(
    questions: str = typer.Option("arithmetic", "--questions", "-q",
                                  help="'arithmetic[:N]', a .jsonl file (question/answer) or a Hugging Face dataset name."),
    agents: int = typer.Option(3, "--agents", min=1, help="Debaters."),
    rounds: int = typer.Option(2, "--rounds", min=1, help="Rounds (the first is independent answers)."),
    model: str = typer.Option("hf:smollm2-135m", "--model", "-m", help=MODEL_HELP),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", min=1, help="Use the first N questions only."),
    out: Path = typer.Option(Path("runs/debate"), "--out", "-o", help="Directory for transcripts.jsonl."),
    concurrency: int = typer.Option(32, min=1, help="Questions in flight at once."),
    seed: int = typer.Option(0, help="Seed for sampling and episode ids."),
    resume: bool = typer.Option(False, help="Continue a run in --out."),
) -> None:
    """Multi-agent debate (Du et al. 2023) against a single agent and a majority vote, on the same questions."""
    import asyncio

    from .protocols._debate import compare_debate

    try:
        with console.status(f"debating {questions} with {agents} agents x {rounds} rounds"):
            report = asyncio.run(compare_debate(questions, agents, rounds, model, out, n=limit, seed=seed,
                                                concurrency=concurrency, resume=resume))
    except SparringError as error:
        raise _fail(error) from None
    table = Table("method", "correct", "accuracy", title=f"{report.questions} questions, {model}")
    for method, correct, accuracy in [
        ("single agent", report.single_agent_correct, report.single_agent),
        (f"majority vote of {agents}, no debate", report.majority_vote_correct, report.majority_vote),
        (f"debate, {agents} agents x {rounds} rounds", report.debate_correct, report.debate),
    ]:
        table.add_row(method, str(correct), f"{accuracy:.1%}")
    console.print(table)
    if report.errors:
        errors.print(f"{report.errors} episode(s) failed and were not scored", highlight=False)
    console.print(f"transcripts: {report.path}", highlight=False)


@protocols_app.command("list")
def protocols_list() -> None:
    """List the built-in protocols."""
    from .protocols import builtin_names, load_protocol

    table = Table("name", "roles", "description")
    for name in builtin_names():
        spec = load_protocol(name).spec
        table.add_row(name, ", ".join(spec.roles), spec.description.strip())
    console.print(table)


@protocols_app.command("show")
def protocols_show(name: str = typer.Argument(..., help="A built-in protocol name or a .yaml file.")) -> None:
    """Print a protocol's YAML."""
    from .protocols import load_protocol

    try:
        console.print(load_protocol(name).text, markup=False, highlight=False)
    except SparringError as error:
        raise _fail(error) from None


@protocols_app.command("validate")
def protocols_validate(file: Path = typer.Argument(..., help="A protocol .yaml file.")) -> None:
    """Check a protocol file: schema, roles, templates and rule expressions."""
    from .protocols import load_protocol

    try:
        loaded = load_protocol(file)
    except SparringError as error:
        raise _fail(error) from None
    console.print(f"{file}: ok ({loaded.name}, roles {', '.join(loaded.spec.roles)})", highlight=False)


def main() -> None:
    """Entry point of the `sparring` console script."""
    app()


if __name__ == "__main__":
    main()
