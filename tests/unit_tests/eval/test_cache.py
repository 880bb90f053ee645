from langchain_core.messages import AIMessage
from langchain_core.outputs import ChatGeneration

from langchain_moa import ChatMoA
from langchain_moa.eval.cache import SQLiteCache
from tests.unit_tests.scripted import ScriptedChatModel


def test_generations_survive_a_new_process(tmp_path) -> None:
    path = tmp_path / "cache.sqlite"
    message = AIMessage(
        "hi", usage_metadata={"input_tokens": 3, "output_tokens": 1, "total_tokens": 4}
    )
    SQLiteCache(path).update("prompt", "llm", [ChatGeneration(message=message)])
    again = SQLiteCache(path)
    cached = again.lookup("prompt", "llm")
    assert cached[0].message.content == "hi"
    assert cached[0].message.usage_metadata["output_tokens"] == 1
    assert again.lookup("prompt", "other llm") is None
    assert len(again) == 1
    again.clear()
    assert len(again) == 0


def test_a_shared_proposer_is_asked_once_across_stacks(tmp_path) -> None:
    cache = SQLiteCache(tmp_path / "cache.sqlite")
    proposer = ScriptedChatModel(model_name="p", reply="shared", cache=cache)
    first_agg = ScriptedChatModel(model_name="a1", reply="one")
    second_agg = ScriptedChatModel(model_name="a2", reply="two")
    assert (
        ChatMoA(proposers=[proposer], aggregator=first_agg, layers=2).invoke("q").content == "one"
    )
    assert (
        ChatMoA(proposers=[proposer], aggregator=second_agg, layers=2).invoke("q").content == "two"
    )
    assert len(proposer.log) == 1
