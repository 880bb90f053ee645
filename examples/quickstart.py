"""Quick start: Mixture-of-Agents offline on the embedded SmolLM2-135M-Instruct.

Its first lines are the README's first example, word for word
(``tests/integration_tests/test_readme.py`` checks they stay so); then what the
answer says of each of its calls.

Run with: python examples/quickstart.py
"""

from langchain_moa import ChatMoA

moa = ChatMoA(max_tokens=256)
answer = moa.invoke("What are three good reasons to learn a second language?")
print(answer.content)

# 3 proposers (one model sampled with three seeds) and an aggregator, served by
# llama.cpp on 127.0.0.1; the server stopped when the program exits.
for layer in answer.response_metadata["layers"]:
    for call in layer:
        print(f"{call['node']}: {call['latency_s']:.1f}s, usage {call['usage']}")
