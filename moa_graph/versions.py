"""The installed versions behind a result, recorded with batch manifests and eval results."""

import platform
from importlib import metadata


def versions(*more: str) -> dict[str, str]:
    """Return the installed versions of moa-graph, its main dependencies, `more`, and Python."""
    names = ("moa-graph", "langgraph", "langchain-core", "langchain-openai", *more)
    found = {}
    for name in names:
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {**found, "python": platform.python_version()}
