"""The aggregate-and-synthesize prompt and how references reach a model.

Both follow the paper's reference code exactly, so results stay comparable
with the published ones.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.prompt_values import PromptValue
from langchain_core.runnables import Runnable
from typing_extensions import TypedDict

AGGREGATE_AND_SYNTHESIZE_PROMPT = (
    "You have been provided with a set of responses from various open-source "
    "models to the latest user query. Your task is to synthesize these responses "
    "into a single, high-quality response. It is crucial to critically evaluate "
    "the information provided in these responses, recognizing that some of it may "
    "be biased or incorrect. Your response should not simply replicate the given "
    "answers but should offer a refined, accurate, and comprehensive reply to the "
    "instruction. Ensure your response is well-structured, coherent, and adheres "
    "to the highest standards of accuracy and reliability.\n\n"
    "Responses from models:"
)
"""The paper's aggregate-and-synthesize prompt, verbatim (Wang et al., 2024)."""


RANK_PROMPT = (
    "You have been provided with a set of responses from various open-source "
    "models to the latest user query. Your task is to select the single best "
    "response. It is crucial to critically evaluate the information provided in "
    "these responses, recognizing that some of it may be biased or incorrect. "
    "Reply with the number of the best response and nothing else.\n\n"
    "Responses from models:"
)
"""The LLM-ranker baseline's prompt: pick one response by number instead of
writing a new one (the paper describes the baseline but prints no prompt)."""


def format_references(prompt: str, references: Sequence[str]) -> str:
    """Return ``prompt`` followed by the references numbered ``1.``, ``2.``, ...

    Model names are left out on purpose: the paper's aggregator judges the
    answers, not who wrote them.
    """
    return prompt + "".join(
        f"\n{number}. {text}" for number, text in enumerate(references, start=1)
    )


def inject_references(
    messages: Sequence[BaseMessage],
    references: Sequence[str],
    prompt: str = AGGREGATE_AND_SYNTHESIZE_PROMPT,
) -> list[BaseMessage]:
    """Put the previous layer's references into the system message.

    As in the reference code, the block is appended after a blank line to a
    leading system message, or becomes a new first system message. With no
    references (layer 1) the conversation is returned unchanged.

    Args:
        messages: The whole conversation; it is not modified.
        references: The previous layer's response texts, in proposer order.
        prompt: The text put before the numbered references.

    Returns:
        A new list of messages.
    """
    if not references:
        return list(messages)
    block = format_references(prompt, references)
    if messages and isinstance(messages[0], SystemMessage):
        first = messages[0]
        content: str | list[str | dict]
        if isinstance(first.content, str):
            content = f"{first.content}\n\n{block}"
        else:
            content = [*first.content, {"type": "text", "text": f"\n\n{block}"}]
        return [first.model_copy(update={"content": content}), *messages[1:]]
    return [SystemMessage(content=block), *messages]


TOOLS_PROMPT = (
    "The final answer may call these tools. If one would help, say which to call "
    "and with which arguments."
)
"""Put before the tool list that proposers read (they propose in text)."""


def describe_tools(tools: Sequence[Mapping[str, Any]]) -> str:
    """The tools (OpenAI format) as text: ``- name(arguments schema): description``."""
    lines = [TOOLS_PROMPT]
    for tool in tools:
        function = tool.get("function", tool)
        parameters = json.dumps(function.get("parameters", {}), sort_keys=True)
        lines.append(f"- {function['name']}({parameters}): {function.get('description', '')}")
    return "\n".join(lines)


def _append_system(messages: list[BaseMessage], text: str) -> list[BaseMessage]:
    if messages and isinstance(messages[0], SystemMessage) and isinstance(messages[0].content, str):
        first = messages[0]
        return [first.model_copy(update={"content": f"{first.content}\n\n{text}"}), *messages[1:]]
    return [SystemMessage(content=text), *messages]


def tool_turns_as_text(
    messages: Sequence[BaseMessage], tools: Sequence[Mapping[str, Any]] = ()
) -> list[BaseMessage]:
    """The conversation as a model without tools can read it.

    Tool calls become a line in the assistant's text, tool results a user
    message naming the tool, and the tool definitions a paragraph of the
    system message. A conversation with no tools is returned as it is.
    """
    names: dict[str, str] = {}
    readable: list[BaseMessage] = []
    for message in messages:
        if isinstance(message, AIMessage) and message.tool_calls:
            calls = []
            for call in message.tool_calls:
                names[call["id"] or ""] = call["name"]
                calls.append(
                    f"[called {call['name']} with {json.dumps(call['args'], sort_keys=True)}]"
                )
            readable.append(AIMessage(content="\n".join(filter(None, [message.text, *calls]))))
        elif isinstance(message, ToolMessage):
            name = message.name or names.get(message.tool_call_id, "a tool")
            readable.append(HumanMessage(content=f"[{name} returned] {message.text}"))
        else:
            readable.append(message)
    return _append_system(readable, describe_tools(tools)) if tools else readable


class PromptInput(TypedDict):
    """What a prompt callable or Runnable receives for one model call."""

    messages: list[BaseMessage]
    """The conversation the model answers (tool turns as text for proposers)."""
    references: list[str]
    """The previous layer's successful answers, in proposer order."""
    numbered_references: str
    """The references as the paper numbers them (``1. ...``, one per line)."""
    layer: int
    """The calling model's layer (the aggregator's is the last)."""


Prompt = str | Runnable[PromptInput, Any] | Callable[[PromptInput], Any]
"""Text put before the numbered references, or a callable or Runnable that
returns the messages to send (a list of messages or a ``PromptValue``)."""


def render_prompt(
    prompt: Prompt, messages: Sequence[BaseMessage], references: Sequence[str], layer: int
) -> list[BaseMessage]:
    """The messages a model of ``layer`` is sent, given the previous layer's references.

    With no references (layer 1) the conversation goes as it is.

    Raises:
        TypeError: a callable or Runnable prompt returned no messages.
    """
    if not references:
        return list(messages)
    if isinstance(prompt, str):
        return inject_references(messages, references, prompt)
    given = PromptInput(
        messages=list(messages),
        references=list(references),
        numbered_references=format_references("", references).lstrip("\n"),
        layer=layer,
    )
    result = prompt.invoke(given) if isinstance(prompt, Runnable) else prompt(given)
    if isinstance(result, PromptValue):
        return result.to_messages()
    if isinstance(result, list) and all(isinstance(m, BaseMessage) for m in result):
        return result
    msg = f"the prompt must return a list of messages or a PromptValue, got {type(result).__name__}"
    raise TypeError(msg)
