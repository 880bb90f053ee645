"""Quick start: Mixture-of-Agents offline on the embedded SmolLM2-135M-Instruct.

Run with: python examples/quickstart.py
"""

from langchain_moa import ChatMoA

# 3 proposers (one model sampled with three seeds) and an aggregator, served by
# llama.cpp on 127.0.0.1; the server stops when the program exits.
moa = ChatMoA.local(max_tokens=64)

question = "Give one tip for writing clear emails."
print(f"Q: {question}\nA: ", end="", flush=True)
for chunk in moa.stream(question):
    print(chunk.content, end="", flush=True)
    final = chunk
print()

for layer in final.response_metadata["layers"]:
    for call in layer:
        print(f"{call['node']}: {call['latency_s']:.1f}s, usage {call['usage']}")
