"""ChatMoA in an LCEL chain: prompt | MoA | output parser, offline.

Run with: python examples/lcel_chain.py
"""

from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate

from langchain_moa import ChatMoA

prompt = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a concise assistant. Answer in one or two sentences."),
        ("human", "Explain {topic} to a ten-year-old."),
    ]
)
chain = prompt | ChatMoA.local(max_tokens=64) | StrOutputParser()

for topic in ("rainbows", "volcanoes"):
    print(f"{topic}: {chain.invoke({'topic': topic})}\n")
