"""LangChain's standard integration tests for ChatMoA.

Two stacks, two classes:

- ``TestChatMoALocal``: the embedded stack (``ChatMoA.local``) on one
  SmolLM2-135M server for the whole session. The flags say what a 135M model
  does: it answers, streams and counts tokens, but cannot be relied on to
  call tools or fill a schema, so those tests are skipped here.
- ``TestChatMoAToolCalling``: every model a ``ChatOpenAI`` talking real HTTP
  to a scripted OpenAI-compatible server on 127.0.0.1, which answers tool
  calls and structured output the way OpenAI's API does. It shows what the
  small model cannot: tools, tool choice and structured output through
  ChatMoA's aggregator.

The suite builds a model per test from ``chat_model_params`` (its ``model``
fixture, and ``test_stop_sequence`` directly), so each server is started once
(the llama.cpp one by conftest's session fixture, the scripted one per
module) and handed to its class by a class-scoped fixture, before any model
is built.
"""

from collections.abc import Iterator
from typing import Any, Literal

import pytest
from langchain_core.language_models import BaseChatModel
from langchain_openai import ChatOpenAI
from langchain_tests.integration_tests import ChatModelIntegrationTests

from langchain_moa import ChatMoA, LlamaServer
from tests.integration_tests.scripted_openai import ScriptedOpenAI

MAX_TOKENS = 16
"""Short answers keep the local class fast on two cores."""

SchemaType = Literal["pydantic", "typeddict", "json_schema"]


class TestChatMoALocal(ChatModelIntegrationTests):
    server: LlamaServer

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _llama_server(cls, server: LlamaServer) -> None:
        # Class scope: set before the function-scoped ``model`` fixture runs.
        cls.server = server

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatMoA

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # The suite builds ChatMoA(**chat_model_params): hand it the fields of
        # the stack that ChatMoA.local builds (3 proposers, one model with three
        # seeds, 2 layers counting the aggregator's), on the session's server.
        return ChatMoA.local(server=self.server, max_tokens=MAX_TOKENS).fields()

    # bind_tools exists, but on this model and server tool calls do not work:
    # unforced, SmolLM2-135M answers in text; tool_choice="any" (sent as
    # "required") gets a 500 from llama-cpp-python's server; a tool forced by
    # name is called with made-up arguments (magic_function(3) as input=10).
    # Structured output goes through the same tool calls. Those tests skip.
    @property
    def has_tool_calling(self) -> bool:
        return False

    @property
    def has_tool_choice(self) -> bool:
        return False

    @property
    def has_structured_output(self) -> bool:
        return False

    # Proposers' usage is always counted; the streamed aggregator's is not
    # (llama.cpp's server sends no usage on streams), but the answer still
    # carries the stack's usage.
    @property
    def returns_usage_metadata(self) -> bool:
        return True

    # A per-call ``model`` is an aggregator call option, not a ChatMoA model
    # swap; response_metadata keeps ChatMoA's own model_name.
    @property
    def supports_model_override(self) -> bool:
        return False


@pytest.fixture(scope="module")
def scripted_openai() -> Iterator[ScriptedOpenAI]:
    with ScriptedOpenAI() as running:
        yield running


class TestChatMoAToolCalling(ChatModelIntegrationTests):
    scripted: ScriptedOpenAI

    @pytest.fixture(autouse=True, scope="class")
    @classmethod
    def _scripted_server(cls, scripted_openai: ScriptedOpenAI) -> None:
        cls.scripted = scripted_openai

    def _model(self, name: str) -> ChatOpenAI:
        return ChatOpenAI(
            model=name, base_url=self.scripted.base_url, api_key="scripted", stream_usage=True
        )

    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatMoA

    @property
    def chat_model_params(self) -> dict[str, Any]:
        return {
            "proposers": [self._model("scripted-proposer-1"), self._model("scripted-proposer-2")],
            "aggregator": self._model("scripted-aggregator"),
            "layers": 2,
        }

    # The aggregator is a tool-calling ChatOpenAI: ChatMoA binds tools and
    # tool_choice to it, and with_structured_output goes through tool calling.
    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    # The scripted server sends usage on streams too: every call is counted.
    @property
    def returns_usage_metadata(self) -> bool:
        return True

    @property
    def supports_model_override(self) -> bool:
        return False
