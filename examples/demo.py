"""`make demo`: the gateway with examples/claude-gemini.yaml against simulated providers.

Starts the fake upstream (no real model is called, no key is needed), points
the config's providers at it through the usual environment variables, starts
`interlock serve` in-process, and sends a handful of requests with the
official `openai` client. For each it prints the group the router chose, the
deployment that answered, latency, tokens and cost.

With real keys exported instead, the same config talks to the real providers:
    interlock serve --config examples/claude-gemini.yaml
"""

from __future__ import annotations

import os
import socket
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "claude-gemini.yaml"

PROMPTS = [
    ("auto", "Write a Python function that checks whether a string is a palindrome."),
    ("auto", "この記事を三行で要約してください：Interlock はリクエストごとにモデルを選びます。"),
    ("auto", "Hi! What's a nice name for a goldfish?"),
    ("auto", "Pythonでクイックソートのコードを書いて"),
    ("auto", "Translate 'good morning' into French, German and Japanese."),
    ("high-quality", "Review this design for a rate limiter."),
    ("budget", "Say hello in one word."),
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_gateway(port: int) -> object:
    import uvicorn

    from interlock.config import load_config
    from interlock.server.app import create_app

    app = create_app(load_config(CONFIG), host="127.0.0.1")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port,
                                           log_level="warning", lifespan="on"))
    threading.Thread(target=server.run, name="interlock-gateway", daemon=True).start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            sys.exit("the gateway did not start")
        time.sleep(0.02)
    return server


def main() -> None:
    from openai import OpenAI

    from interlock.testing import FakeUpstream

    fake = FakeUpstream().start()
    # Simulated credentials and endpoints: the same variables real users export.
    os.environ.update(fake.environ())
    os.environ.setdefault("ANTHROPIC_API_KEY", "sk-ant-simulated-demo-key")
    os.environ.setdefault("GEMINI_API_KEY", "simulated-demo-key")
    os.environ.setdefault("INTERLOCK_MASTER_KEY", "sk-interlock-demo")
    port = _free_port()
    server = _start_gateway(port)
    client = OpenAI(base_url=f"http://127.0.0.1:{port}/v1",
                    api_key=os.environ["INTERLOCK_MASTER_KEY"])

    print("=" * 100)
    print("SIMULATED RUN: every answer below comes from Interlock's fake upstream, "
          "not a real model.")
    print("=" * 100)
    print(f"{'asked for':<13} {'routed to':<15} {'deployment':<50} {'ms':>6} "
          f"{'in':>5} {'out':>4} {'cost $':>10}")
    for model, prompt in PROMPTS:
        started = time.perf_counter()
        raw = client.chat.completions.with_raw_response.create(
            model=model, messages=[{"role": "user", "content": prompt}])
        elapsed = (time.perf_counter() - started) * 1000
        resp = raw.parse()
        h = raw.headers
        cost = h.get("x-interlock-cost-usd", "unknown")
        usage = resp.usage
        print(f"{model:<13} {h.get('x-interlock-model-group', '?'):<15} "
              f"{h.get('x-interlock-deployment', '?'):<50} {elapsed:6.1f} "
              f"{usage.prompt_tokens if usage else 0:>5} "
              f"{usage.completion_tokens if usage else 0:>4} {cost:>10}")
        print(f"{'':<13} route: {h.get('x-interlock-route', '')}")

    print("\nStreaming through the gateway:")
    stream = client.chat.completions.create(
        model="auto", stream=True, stream_options={"include_usage": True},
        messages=[{"role": "user", "content": "Tell me a short story about a router."}])
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    print(f"  {text}")
    server.should_exit = True  # type: ignore[attr-defined]
    time.sleep(0.5)
    fake.stop()
    print("\nThe ledger now holds these requests. See what they cost:")
    print("  .venv/bin/interlock spend --config examples/claude-gemini.yaml")
    print("  .venv/bin/interlock report --config examples/claude-gemini.yaml --out report.html")


if __name__ == "__main__":
    main()
