"""LangChain's standard unit tests for ChatMoA, on scripted models (no network)."""

from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_tests.unit_tests import ChatModelUnitTests

from langchain_moa import ChatMoA
from tests.unit_tests.scripted import ScriptedChatModel


class TestChatMoAStandard(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[BaseChatModel]:
        return ChatMoA

    @property
    def standard_chat_model_params(self) -> dict[str, Any]:
        # temperature, max_tokens, timeout, max_retries and stop are ChatMoA
        # fields; a key is not: keys reach a stack only through environment
        # variables (api_key_env), and ChatMoA refuses one.
        params = super().standard_chat_model_params
        params.pop("api_key")
        return params

    @property
    def chat_model_params(self) -> dict[str, Any]:
        # MoA-Lite's shape: one proposer layer of two models, then the aggregator.
        return {
            "proposers": [
                ScriptedChatModel(model_name="proposer-1", reply="a first proposal"),
                ScriptedChatModel(model_name="proposer-2", reply="a second proposal"),
            ],
            "aggregator": ScriptedChatModel(model_name="aggregator", reply="the answer"),
            "layers": 2,
        }

    # bind_tools binds tools (and tool_choice) to the aggregator, so tool
    # calling, tool choice and structured output through tool calling hold.
    @property
    def has_tool_calling(self) -> bool:
        return True

    @property
    def has_tool_choice(self) -> bool:
        return True

    @property
    def has_structured_output(self) -> bool:
        return True

    # usage_metadata sums the usage of every call of the stack.
    @property
    def returns_usage_metadata(self) -> bool:
        return True

    # A per-call ``model`` reaches the aggregator's call options; ChatMoA has
    # no model of its own to swap, and reports its own model_name.
    @property
    def supports_model_override(self) -> bool:
        return False
