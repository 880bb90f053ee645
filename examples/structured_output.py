"""Structured output from a MoA stack: the aggregator fills a Pydantic schema, offline.

The proposers answer in text; the aggregator is made to call the schema as a
tool, which the embedded llama.cpp server decodes under a JSON grammar.

Run with: python examples/structured_output.py
"""

from pydantic import BaseModel, Field

from langchain_moa import ChatMoA


class City(BaseModel):
    """A city and the country it is in."""

    name: str = Field(description="The city's name")
    country: str = Field(description="The country the city is in")


moa = ChatMoA.local(max_tokens=64)
city = moa.with_structured_output(City).invoke("Paris is the capital of France.")
print(repr(city))
print(f"{city.name} is in {city.country}.")
