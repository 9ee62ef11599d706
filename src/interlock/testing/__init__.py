"""A fake upstream that speaks the OpenAI, Anthropic and Gemini wire formats.

For tests, the demo and users trying their configs offline
(`interlock fake-upstream --port N`). Nothing here touches the network.
"""

from interlock.testing.fake_upstream import FakeUpstream, FakeUpstreamApp
from interlock.testing.script import Fault, ReceivedRequest, Reply, ScriptedToolCall

__all__ = ["FakeUpstream", "FakeUpstreamApp", "Fault", "ReceivedRequest", "Reply",
           "ScriptedToolCall"]
