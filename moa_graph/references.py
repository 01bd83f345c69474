"""How a model is shown the previous layer's answers: the references in its system prompt.

Follows togethercomputer/MoA ``utils.py::inject_references_to_messages`` (the numbered layout
of Wang et al., arXiv 2406.04692, Table 1): the conversation is copied, and the prompt plus one
line per reference is appended to an existing system message or put in a new one first. The
``tagged`` layout wraps each reference in tags that carry a random key (spotlighting,
arXiv 2403.14720), so a proposal cannot forge the start of another reference.
"""

import random
import secrets
from collections.abc import Sequence

from langchain_core.messages import BaseMessage, SystemMessage

from moa_graph.prompts import TAGGED_REFERENCES_NOTICE


def inject_references(
    messages: Sequence[BaseMessage],
    references: Sequence[str],
    prompt: str,
    *,
    reference_format: str = "numbered",
) -> list[BaseMessage]:
    """Return a copy of `messages` whose system prompt carries the `references`.

    ``numbered``: `prompt`, then for each reference a newline and ``{i}. {reference}``,
    numbered from 1 (the reference implementation's exact text). ``tagged``: `prompt`, a line
    saying that tagged text is data, then each reference as ``<response id="i" key="K">``,
    its text, ``</response key="K">``, where K is a fresh random 8-hex-digit key per call.
    Content is never escaped, so code answers stay intact. An existing leading system message
    is kept and the block follows it after a blank line; otherwise a system message is put
    first. The input list and its messages are never modified.

    Args:
        messages: The conversation, oldest first.
        references: Answers to show, in the order to show them; must not be empty.
        prompt: The instruction the references follow (e.g. ``MoAContext.aggregator_prompt``).
        reference_format: ``"numbered"`` (default) or ``"tagged"``.

    Returns:
        A new list: one system message, then the rest of the conversation.

    Raises:
        ValueError: `references` is empty (a layer with no answers must fail before this), or
            an unknown `reference_format`.
    """
    if not references:
        raise ValueError("inject_references needs at least one reference")
    if reference_format == "numbered":
        block = prompt + "".join(f"\n{i}. {ref}" for i, ref in enumerate(references, start=1))
    elif reference_format == "tagged":
        key = secrets.token_hex(4)
        block = f"{prompt}\n{TAGGED_REFERENCES_NOTICE.format(key=key)}" + "".join(
            f'\n<response id="{i}" key="{key}">\n{ref}\n</response key="{key}">'
            for i, ref in enumerate(references, start=1)
        )
    else:
        raise ValueError(f"unknown reference_format {reference_format!r}")
    return with_system_prompt(messages, block, first=False)


def with_system_prompt(
    messages: Sequence[BaseMessage], text: str | None, *, first: bool = True
) -> list[BaseMessage]:
    """Return a copy of `messages` with `text` in the leading system message.

    Args:
        messages: The conversation.
        text: Text to add; None returns a plain copy of the list.
        first: True puts `text` before an existing system message's content (a proposer's
            role, the aggregator's extra instructions); False puts it after (references).
    """
    if text is None:
        return list(messages)
    if messages and isinstance(messages[0], SystemMessage):
        head = messages[0]
        content = f"{text}\n\n{head.text}" if first else f"{head.text}\n\n{text}"
        return [head.model_copy(update={"content": content}), *messages[1:]]
    return [SystemMessage(content=text), *messages]


def reference_order(count: int, *, shuffle: bool, rng: random.Random) -> list[int]:
    """Return the order to show `count` references in: 0..count-1, shuffled with `rng` if asked.

    Shuffling counters the position bias of judges and aggregators; the caller maps a shown
    position back to its proposal with the returned list.
    """
    order = list(range(count))
    if shuffle:
        rng.shuffle(order)
    return order
