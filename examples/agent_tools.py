"""An agent whose model is a MoA stack: LangChain's create_agent with tools, offline.

The aggregator gets the tools and may call them; the proposers read the tool
definitions and results as text and propose in text. A 135M model calls
tools only sometimes: the transcript below shows what it did.

Run with: python examples/agent_tools.py
"""

from langchain.agents import create_agent
from langchain_core.tools import tool

from langchain_moa import ChatMoA


@tool
def get_weather(city: str) -> str:
    """Get today's weather in a city."""
    return f"It is sunny and 21 degrees C in {city}."


agent = create_agent(model=ChatMoA.local(max_tokens=64), tools=[get_weather])
result = agent.invoke(
    {"messages": [("user", "What is the weather in Paris today? Use the get_weather tool.")]}
)
for message in result["messages"]:
    calls = f" tool calls: {message.tool_calls}" if getattr(message, "tool_calls", None) else ""
    print(f"[{message.type}] {message.text}{calls}")
