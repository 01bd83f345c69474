"""The quickstart of the home page, on hosted-provider specs pointed at a scripted server.

Run by .ci/wheel-check in a venv that holds the wheel and its core dependencies only.
"""

import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # the tests' scripted server (stdlib only)

from tests.scripted_openai_server import ScriptedOpenAIServer

server = ScriptedOpenAIServer(lambda body: f"{body['model']} says 42").start()
os.environ.update(OPENAI_API_KEY="unused", OPENAI_BASE_URL=server.url)
try:
    from moa_graph import ChatMoA, MoAContext

    moa = ChatMoA(context=MoAContext(proposers=["openai:a", "openai:b"], aggregator="openai:c"))
    answer = moa.invoke("What is 17 + 25?")
    print(answer.content, answer.usage_metadata)
    assert answer.content == "c says 42" and len(server.requests) == 3
finally:
    server.stop()
