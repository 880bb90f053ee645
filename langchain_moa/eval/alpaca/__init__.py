"""AlpacaEval 2.0: the weighted GPT-4 Turbo pairwise judge and its metrics.

Laid out as alpaca_eval keeps its annotators apart from its metrics, reproducing
``alpaca_eval`` 0.6.6 (``weighted_alpaca_eval_gpt4_turbo`` against the
``gpt4_1106_preview`` reference):

- `langchain_moa.eval.alpaca.judge`: the judge's prompt and its chat-ml parsing, the
  per-instruction order of the two outputs, the preference from the judge's logprobs.
- `langchain_moa.eval.alpaca.metrics`: the win rate, its standard error and the
  length-controlled win rate (needs the ``eval`` extra: numpy, scikit-learn).
- `langchain_moa.eval.alpaca.evaluate`: the run (answers, judgements, scores) and the
  benchmark's record.

One pair is judged as alpaca_eval does it, with ``gpt-4-1106-preview`` asked for one token
(``max_tokens=1``, ``temperature=1``, ``logprobs=True``, ``top_logprobs=5``)::

    if model == reference:
        preference = 1.5  # alpaca_eval records a draw without asking the judge
    else:
        swapped = is_swapped(instruction)
        first, second = (model, reference) if swapped else (reference, model)
        reply = judge.invoke(judge_messages(template, instruction, first, second))
        top = reply.response_metadata["logprobs"]["content"][0]["top_logprobs"]
        preference = preference_from_logprobs(top)  # None: alpaca_eval drops the pair
        if preference is not None:
            preference = unswap(preference, swapped)
"""

from langchain_moa.eval.alpaca.evaluate import BENCHMARK

__all__ = ["BENCHMARK"]
