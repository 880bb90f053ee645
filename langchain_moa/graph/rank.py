"""The paper's LLM-ranker baseline: the aggregator picks one answer by number."""

from __future__ import annotations

import re
from dataclasses import dataclass

from langchain_core.messages import AIMessage, BaseMessage

from langchain_moa.accounting import ModelCall
from langchain_moa.graph.calls import stream_whole
from langchain_moa.graph.final import Attempt, Final
from langchain_moa.graph.plan import Plan
from langchain_moa.graph.prompts import RANK_PROMPT
from langchain_moa.stacks import Rank


@dataclass(frozen=True)
class Ranker(Final):
    """The LLM-ranker baseline: the aggregator picks a reference by number.

    Its answer is the chosen reference verbatim. A reply with no valid number
    takes reference 1, and the ranker's call record says so in ``error``.
    """

    def call(self, attempt: Attempt) -> BaseMessage:
        """The ranker's call (never streamed: its reply is a number)."""
        return attempt.model.invoke(attempt.inputs, self.config(attempt.config, attempt.node))

    async def acall_model(self, attempt: Attempt) -> BaseMessage:
        """``call``, for async runs."""
        config = self.config(attempt.config, attempt.node)
        return await attempt.model.ainvoke(attempt.inputs, config)

    def answered(self, attempt: Attempt, reply: BaseMessage, call: ModelCall) -> AIMessage:
        """The answer is the reference the reply names (1 if none)."""
        references = attempt.state.get("references", [])
        choice = parse_choice(reply.text, len(references))
        if choice is None:
            choice = 1
            call["error"] = (
                f"ValueError: no response number 1-{len(references)} in the reply; took 1"
            )
            call["reason"] = "bad_response"
        answer = AIMessage(content=references[choice - 1], response_metadata={"choice": choice})
        stream_whole(attempt.config, answer)
        return answer


def parse_choice(reply: str, count: int) -> int | None:
    """The first number in ``reply`` that names one of ``count`` responses."""
    for number in re.findall(r"\d+", reply):
        if 1 <= int(number) <= count:
            return int(number)
    return None


def plan(_: Rank) -> Plan:
    """The ranker answers, with the paper's ranking prompt."""
    return Plan(final=Ranker, prompt=RANK_PROMPT)
