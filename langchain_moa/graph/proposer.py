"""A proposer: one model's answer in a layer; a failure becomes a record, not an error.

Every call runs within its ``timeout_s`` and its layer's deadline (see ``limits``);
the join decides whether enough of the layer succeeded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from langchain_core.messages import (
    BaseMessage,
)
from langchain_core.runnables import RunnableConfig

from langchain_moa.accounting import (
    describe_error,
)
from langchain_moa.graph.calls import ModelNode, Start, emit, logger
from langchain_moa.graph.limits import LayerClock, LayerClocks
from langchain_moa.graph.prompts import tool_turns_as_text
from langchain_moa.graph.state import (
    CALL_END,
    CALL_ERROR,
    MoAState,
)


@dataclass(frozen=True)
class Proposer(ModelNode):
    """Answers once; a failure becomes a record, not an exception."""

    clocks: LayerClocks = field(default_factory=LayerClocks)
    """Shared by the layer's proposers: its deadline (see ``limits``)."""

    def conversation(self, state: MoAState) -> list[BaseMessage]:
        """The conversation with tools and tool turns as text."""
        # Proposers propose in text: tools and tool turns reach them as text.
        return tool_turns_as_text(state["messages"], state.get("tools", []))

    def clock(self, state: MoAState) -> LayerClock:
        """This run's clock of the layer."""
        return self.clocks.get(state.get("run", ""), self.layer, self.policy)

    def done(
        self,
        state: MoAState,
        config: RunnableConfig,
        start: Start,
        message: BaseMessage | None,
        error: Exception | None,
        *,
        note: str | None,
        clock: LayerClock,
    ) -> dict:
        """Record the call; a failure (an empty answer is one) becomes the record's error."""
        if error is not None:
            logger.warning("%s failed: %s", self.name, describe_error(error))
            message = None
        else:
            clock.answered()
        call = self.record(start, message=message, error=error, note=note, state=state)
        emit(config, CALL_ERROR if error else CALL_END, call)
        return {"calls": [call]}

    def __call__(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node: one model call, its record in the state."""
        start, clock = self.started(state, config), self.clock(state)
        message, error, note = None, None, None
        try:
            inputs, note = self.inputs(state)
            message = self.run(
                self.model, lambda: self.model.invoke(inputs, self.config(config)), clock
            )
        except Exception as caught:  # noqa: BLE001 - recorded; the join decides
            error = caught
        return self.done(state, config, start, message, error, note=note, clock=clock)

    async def acall(self, state: MoAState, config: RunnableConfig) -> dict:
        """The node, for async runs; cancelling the run cancels the call."""
        start, clock = self.started(state, config), self.clock(state)
        message, error, note = None, None, None
        try:
            inputs, note = await self.ainputs(state)
            message = await self.arun(
                self.model, lambda: self.model.ainvoke(inputs, self.config(config)), clock
            )
        except Exception as caught:  # noqa: BLE001 - recorded; the join decides
            error = caught
        return self.done(state, config, start, message, error, note=note, clock=clock)
