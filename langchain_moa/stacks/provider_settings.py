"""The setting names an entry may give an OpenAI-compatible model: ``ChatOpenAI``'s own.

The stack spec checks an entry's settings against these names, read from
``ChatOpenAI``'s pydantic fields; no model is built here (see ``factory``).
"""

from __future__ import annotations

from functools import cache

from langchain_openai import ChatOpenAI
from pydantic import AliasChoices, BaseModel


def setting_names(model_class: type[BaseModel]) -> frozenset[str]:
    """Every name a pydantic class takes a setting by: field names and aliases."""
    names = set()
    for name, field in model_class.model_fields.items():
        names.add(name)
        if isinstance(field.alias, str):
            names.add(field.alias)
        if isinstance(field.validation_alias, AliasChoices):
            names.update(c for c in field.validation_alias.choices if isinstance(c, str))
    return frozenset(names)


@cache
def openai_settings() -> frozenset[str]:
    """Every name ``ChatOpenAI`` takes a setting by."""
    return setting_names(ChatOpenAI)


OPENAI_RENAMED = {
    "model_name": "model",
    "openai_api_base": "base_url",
    "max_completion_tokens": "max_tokens",
}
"""ChatOpenAI's names for settings an entry spells its own way."""
