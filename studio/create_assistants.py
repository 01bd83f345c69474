"""Save the assistants of studio/assistants.json on a running `langgraph dev` server.

    python studio/create_assistants.py [--url http://127.0.0.1:2024]

Each entry becomes an assistant (a graph with saved settings, i.e. a saved context) that
Studio lists in its assistant menu. Running the script again updates them in place: the id of
each is derived from its name. On a server with ``MOA_SERVE_AUTH=true`` only the operator's
key may save assistants: the script sends ``MOA_ADMIN_KEY`` when it is set.
"""

import argparse
import asyncio
import json
import os
import uuid
from pathlib import Path
from typing import Any

from langgraph_sdk import get_client

ASSISTANTS = Path(__file__).with_name("assistants.json")
DEFAULT_URL = "http://127.0.0.1:2024"


def assistant_id(name: str) -> str:
    """Return the stable assistant id of a saved assistant `name` (a UUID5)."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"moa-graph/studio/{name}"))


async def save_assistants(url: str, path: Path = ASSISTANTS) -> list[dict[str, Any]]:
    """Create or update every assistant of `path` on the server at `url`; return them."""
    client = get_client(url=url, api_key=os.environ.get("MOA_ADMIN_KEY") or None)
    saved = []
    for entry in json.loads(path.read_text()):
        fields = {
            "graph_id": entry["graph_id"],
            "context": entry["context"],
            "name": entry["name"],
            "description": entry.get("description"),
            "metadata": {"source": "moa-graph studio/assistants.json"},
        }
        assistant = await client.assistants.create(
            assistant_id=assistant_id(entry["name"]), if_exists="do_nothing", **fields
        )
        if assistant["context"] != entry["context"]:  # it existed with older settings
            assistant = await client.assistants.update(assistant["assistant_id"], **fields)
        saved.append(dict(assistant))
    return saved


def main() -> None:
    """Parse the command line and save the assistants."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--url", default=DEFAULT_URL, help=f"server URL (default {DEFAULT_URL})")
    args = parser.parse_args()
    for assistant in asyncio.run(save_assistants(args.url)):
        print(f"{assistant['assistant_id']}  {assistant['graph_id']:<13} {assistant['name']}")


if __name__ == "__main__":
    main()
