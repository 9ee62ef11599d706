"""A fake upstream that speaks the OpenAI, Anthropic and Gemini wire formats.

For tests, the demo and users trying their configs offline
(`interlock fake-upstream --port N`). Nothing here touches the network.

Imports: the standard library and uvicorn only; it knows the providers' wire
formats on its own, so it checks the adapters rather than sharing their code.
"""

from interlock.testing.fake_upstream import FakeUpstream, FakeUpstreamApp
from interlock.testing.script import Fault, ReceivedRequest, Reply, ScriptedToolCall

__all__ = ["FakeUpstream", "FakeUpstreamApp", "Fault", "ReceivedRequest", "Reply",
           "ScriptedToolCall"]
