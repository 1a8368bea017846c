"""The offline scripted model: a litellm custom provider for ``scripted/<name>`` models.

Deterministic and zero-latency by default; everything still goes through litellm::

    from handlers.llm.scripted import Reply, scripted
    scripted.script("weather", [
        Reply.tool_call("get_weather", {"city": "Paris"}),
        Reply.text("It is sunny in Paris."),
    ])
    result = await call_model("scripted/weather", messages, tools=[get_weather])

With nothing queued a model answers by ``default_behaviour``. ``scripted.requests(name)``
shows what the model received; ``scripted.chunk_delay`` slows streams down;
``scripted.configure(name, latency_s=1.0, responder=fn)`` gives one model a latency (for
benchmarks) and a reply function of the request (used when nothing is queued);
``scripted.reset()`` forgets everything. The provider registers itself the first time
litellm is loaded through ``handlers.llm.litellm_loader`` (importing this package does not
import litellm).
"""

from handlers.llm.scripted.hash_embedding import hash_embedding
from handlers.llm.scripted.replies import Reply, ScriptedToolCall
from handlers.llm.scripted.schema_values import example_for_schema
from handlers.llm.scripted.script_book import ScriptBook, ScriptedRequest, scripted
from handlers.llm.scripted.tokens import count_tokens

__all__ = [
    "Reply", "ScriptBook", "ScriptedRequest", "ScriptedToolCall", "count_tokens",
    "example_for_schema", "hash_embedding", "scripted",
]
