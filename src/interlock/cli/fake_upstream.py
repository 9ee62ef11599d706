"""`interlock fake-upstream`: a local stand-in for OpenAI, Anthropic and Gemini.

Lets users try their configs with no keys and no network: every answer is
simulated and says so. A request for JSON (structured outputs, JSON mode)
gets simulated JSON of its schema, so a client that parses it can be tried too.

Imports: typer, `testing`.
"""

from __future__ import annotations

import time

import typer


def fake_upstream(
    port: int = typer.Option(8900, help="Port to listen on (127.0.0.1)."),
    latency: float = typer.Option(0.0, help="Seconds of simulated latency per request."),
) -> None:
    """Serve simulated provider APIs on 127.0.0.1 until interrupted.

    Requests for JSON (structured outputs) get simulated JSON of their schema."""
    from interlock.testing import FakeUpstream, Fault

    try:
        fake = FakeUpstream(port=port, record=False).start()
    except OSError as exc:
        typer.echo(f"error: cannot listen on 127.0.0.1:{port} ({exc.strerror or exc}); "
                   "choose another port with --port", err=True)
        raise typer.Exit(1) from None
    if latency:
        fake.script(Fault(latency=latency, times=None))
    typer.echo("Simulated providers (no real model is called):")
    for name, value in fake.environ().items():
        typer.echo(f"  export {name}={value}")
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()


def register(app: typer.Typer) -> None:
    app.command("fake-upstream")(fake_upstream)
