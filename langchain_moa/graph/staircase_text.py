"""Staircase's text: what a step is told, and how its chunks join the answer so far.

Pure functions of strings and chunks, apart from the node that runs the steps
(``graph.staircase``): the notes a step's prompt gets, the filter that holds back a
continuation's echo of the answer so far, where a sentence ends, and the space that
joins a step's first chunk to the last word.
"""

from __future__ import annotations

from langchain_core.messages import AIMessageChunk, BaseMessageChunk

PARTIAL_NOTE = (
    "Some responses below are still being written: those end with {marker}, and only "
    "their beginning is shown. Start your response from what they say so far.\n\n"
)
"""Put before the aggregator's prompt text in a step that reads unfinished proposals."""

UNFINISHED = "[unfinished]"
"""Ends a reference that is still being written."""

CONTINUE_PROMPT = (
    "Your response to the user has already begun with the text below. Write only what "
    "comes next, continuing it from exactly where it stops, without repeating it.\n\n"
    "{written}"
)
"""Put at the end of the system message in every step but the first (``{written}``:
the answer so far)."""


def _squash(text: str) -> str:
    return "".join(text.split())


def _after(text: str, prefix: str) -> str:
    """``text`` past its first ``len(_squash(prefix))`` non-space characters."""
    remaining = len(_squash(prefix))
    for position, char in enumerate(text):
        if remaining == 0:
            return text[position:]
        remaining -= not char.isspace()
    return ""


class Echo:
    """Holds back a continuation's chunks while they only repeat the answer so far.

    Whitespace is ignored in the comparison. A complete copy is dropped (and the
    rest of the chunk that completes it passed on); a reply that departs from
    the answer so far before copying all of it is passed on whole.
    """

    def __init__(self, written: str) -> None:
        """Compare against ``written``, the answer so far ("" passes everything)."""
        self.target = _squash(written)
        self.checking = bool(self.target)
        self.held: list[BaseMessageChunk] = []
        self.text = ""

    def feed(self, chunk: BaseMessageChunk) -> list[BaseMessageChunk]:
        """The chunks that may go out now (none while it still looks like a copy)."""
        if not self.checking:
            return [chunk]
        self.held.append(chunk)
        self.text += chunk.text
        probe = _squash(self.text)
        if len(probe) < len(self.target) and self.target.startswith(probe):
            return []
        self.checking = False
        if probe.startswith(self.target):
            rest = _after(self.text, self.target)
            # The model restated the answer so far: only what follows it is new.
            return [AIMessageChunk(content=rest)] if rest.strip() else []
        return self.held


def sentence_ends(text: str) -> bool:
    """Whether ``text`` ends a sentence or a line (``0.`` may be a number going on)."""
    end = text.rstrip(" \t")
    if end.endswith("\n"):
        return True
    return end[-1:] in {".", "!", "?", ":"} and not end[-2:-1].isdigit()


def joined(written: str, chunk: BaseMessageChunk) -> BaseMessageChunk:
    """A step's first chunk, with the space that joins it to the answer so far.

    Chat models begin a reply without one, so a continuation would run into the
    last word.
    """
    text = chunk.content
    if (
        written
        and not written[-1].isspace()
        and isinstance(text, str)
        and text
        and not text[0].isspace()
        and text[0] not in ".,;:!?)]}%'\""
    ):
        return AIMessageChunk(content=f" {text}")
    return chunk
