"""The evaluation's scripted systems and judge, shared by the eval tests.

Model a says "good <n+1>", model b says "bad <n>"; the fair judge prefers "good".
"""

import json
import re
from pathlib import Path
from typing import Any

from tests.scripted_openai_server import ScriptedOpenAIServer

A, B = "single:openai:a", "single:openai:b"


def system_answer(body: dict[str, Any]) -> str:
    """Model a says "good <n+1>", model b says "bad <n>", for a question about number n."""
    question = body["messages"][-1]["content"]
    number = int(re.findall(r"\d+", question)[-1]) if re.findall(r"\d+", question) else 0
    return f"good {number + 1}" if body["model"] == "a" else f"bad {number}"


def fair_judge(body: dict[str, Any]) -> str:
    """Prefers the answer with "good"; rates "good" answers 8 and others 3."""
    prompt = body["messages"][-1]["content"]
    if "[[rating]]" in prompt:
        answer = prompt.split("Answer]\n")[-1]
        return "Rating: [[8]]" if "good" in answer else "Rating: [[3]]"
    first = prompt.split("Assistant A")[1]
    return "[[A]]" if "good" in first.split("Assistant B")[0] else "[[B]]"


def scripted(judge: Any = fair_judge) -> ScriptedOpenAIServer:
    def script(body: dict[str, Any]) -> str:
        return judge(body) if body["model"] == "judge" else system_answer(body)

    return ScriptedOpenAIServer(script)


def jsonl(path: Path, rows: list[dict[str, Any]]) -> str:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return f"jsonl:{path}"
