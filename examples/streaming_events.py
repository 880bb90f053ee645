"""Watch the layers fill in: live proposer events, then the answer's tokens, offline.

Each proposer's start and finish (with its text, usage and latency) arrive as
custom events while the run goes on, before the aggregator writes a word.

Run with: python examples/streaming_events.py
"""

import asyncio

from langchain_moa import ChatMoA
from langchain_moa.graph import CALL_END, CALL_ERROR, CALL_START


async def main() -> None:
    moa = ChatMoA.local(max_tokens=48)
    async for event in moa.astream_events("Give me a name for a cat.", version="v2"):
        if event["event"] == "on_custom_event":
            data = event["data"]
            if event["name"] == CALL_START:
                print(f"> {data['node']} started")
            elif event["name"] in {CALL_END, CALL_ERROR}:
                outcome = data["error"] or f"{data['latency_s']:.1f}s: {data['text'][:60]!r}"
                print(f"< {data['node']} finished ({outcome})")
        elif event["event"] == "on_chat_model_stream" and event["name"] == "ChatMoA":
            print(event["data"]["chunk"].text, end="", flush=True)
    print()


asyncio.run(main())
