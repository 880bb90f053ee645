"""The MoA graph itself, as LangGraph Studio shows it, with a thread of two turns.

``langgraph dev`` serves the same graph (see langgraph.json and the README);
this prints its structure and runs it with a checkpointer, as Studio does.

Run with: python examples/studio_graph.py
"""

from langgraph.checkpoint.memory import InMemorySaver

from langchain_moa import build_moa_graph
from langchain_moa.stacks import build_stack
from langchain_moa.stacks.presets import local_spec

# The embedded stack's models (the server starts on the first call).
stack = build_stack(local_spec(max_tokens=32))
graph = build_moa_graph(stack.layers, stack.aggregator, checkpointer=InMemorySaver())
print(graph.get_graph().draw_mermaid())

thread = {"configurable": {"thread_id": "demo"}}
for question in ("Name a planet.", "Name another one."):
    state = graph.invoke({"messages": [("user", question)]}, thread)
    print(f"Q: {question}\nA: {state['messages'][-1].text}")
turns = sorted({call["turn"] for call in state["calls"]})
print(f"{len(state['calls'])} model calls over {len(turns)} turns")
