from langchain_core.language_models import BaseChatModel

import langchain_moa
from langchain_moa import ChatMoA

EXPECTED_ALL = [
    "AGGREGATE_AND_SYNTHESIZE_PROMPT",
    "ChatMoA",
    "LayerFailedError",
    "LlamaServer",
    "build_moa_graph",
]


def test_all_imports() -> None:
    assert sorted(langchain_moa.__all__) == sorted(EXPECTED_ALL)
    for name in EXPECTED_ALL:
        assert hasattr(langchain_moa, name)


def test_chat_moa_is_a_chat_model() -> None:
    assert issubclass(ChatMoA, BaseChatModel)
