"""The `sparring` command line: a thin layer that parses, calls the library and prints."""

from __future__ import annotations

import sys
from typing import Optional

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


def main() -> None:
    """Entry point of the `sparring` console script."""
    app()


if __name__ == "__main__":
    main()
