"""Retrieval-augmented MoA: a BM25 retriever feeds context to the stack, offline.

retriever -> prompt -> ChatMoA -> output parser, as an LCEL chain.

Run with: python examples/rag.py
"""

from langchain_community.retrievers import BM25Retriever
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnablePassthrough

from langchain_moa import ChatMoA

documents = [
    Document(page_content="Mixture-of-Agents stacks LLMs in layers; each layer sees the last."),
    Document(page_content="MoA with open models scored 65.1% LC win rate on AlpacaEval 2.0."),
    Document(page_content="The aggregator synthesizes the proposers' answers into one."),
    Document(page_content="GSM8K is a set of grade-school math word problems."),
]
retriever = BM25Retriever.from_documents(documents, k=2)


def join(docs: list[Document]) -> str:
    return "\n".join(f"- {doc.page_content}" for doc in docs)


prompt = ChatPromptTemplate.from_messages(
    [
        ("system", "Answer from the context only, in one sentence.\nContext:\n{context}"),
        ("human", "{question}"),
    ]
)
chain = (
    {"context": retriever | join, "question": RunnablePassthrough()}
    | prompt
    | ChatMoA.local(max_tokens=64)
    | StrOutputParser()
)

question = "What did MoA score on AlpacaEval 2.0?"
print("retrieved:\n" + join(retriever.invoke(question)))
print(f"Q: {question}\nA: {chain.invoke(question)}")
