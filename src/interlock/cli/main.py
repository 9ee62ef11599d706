"""The `interlock` command: nouns and verbs, one module per noun.

Each module exposes `register(app)`; heavy imports happen inside the commands
so that `interlock --help` stays quick.

Imports: typer, `cli.*`.
"""

from __future__ import annotations

import importlib

import typer

app = typer.Typer(
    name="interlock",
    help="Route each LLM request to the model that does the job for the least money.",
    no_args_is_help=True,
    add_completion=False,
)

# Each of these modules adds its commands to the app.
_COMMAND_MODULES = [
    "serve", "check", "fake_upstream", "train", "calibrate", "eval", "cost", "spend", "prices",
    "report", "keys",
]

for _name in _COMMAND_MODULES:
    importlib.import_module(f"interlock.cli.{_name}").register(app)


if __name__ == "__main__":
    app()
