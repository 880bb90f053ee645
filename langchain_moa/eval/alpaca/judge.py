"""AlpacaEval 2.0's judge: its prompt, the order of the two outputs, and its preference.

Pure functions that reproduce ``alpaca_eval`` 0.6.6's ``weighted_alpaca_eval_gpt4_turbo``
annotator: the prompt template filled as ``make_prompts`` fills it and split as
``prompt_to_chatml`` splits it, the per-instruction order of the outputs, and
``logprob_parser``'s preference from the judge's top logprobs.
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from langchain_moa.eval.data import DataFile, load_text

JUDGE_TEMPLATE = DataFile(
    "alpaca_eval/judge/evaluators_configs_alpaca_eval_clf_gpt4_turbo_alpaca_eval_clf.txt",
    "784227e6dc2832fc08c43d2c8ea3a308e7523780187a1aaad2f85e30bac85f62",
)
"""The judge's chat-ml prompt template (tatsu-lab/alpaca_eval, Apache-2.0); shipped."""
JUDGE_CONFIG = DataFile(
    "alpaca_eval/judge/evaluators_configs_weighted_alpaca_eval_gpt4_turbo_configs.yaml",
    "fd5c656d9959ffd63b986c8216a81e83e001d17ced5a08defc1c857ce9dd033e",
)
"""The judge's configuration, which the constants below follow; shipped, for reference."""

JUDGE_MODEL = "gpt-4-1106-preview"
"""The judge of the leaderboard (``moa eval alpaca --judge openai:gpt-4-1106-preview``)."""
JUDGE_TEMPERATURE = 1.0
"""The judge samples at 1; the preference comes from its logprobs, not its token."""
JUDGE_MAX_TOKENS = 1
"""One token: ``m`` or ``M``."""
TOP_LOGPROBS = 5
"""How many of the first token's logprobs the judge is asked for."""

SEED = 0
"""The annotators' seed in ``alpaca_eval evaluate``: ``PairwiseAnnotator``'s default, which
it passes to its judges (``SingleAnnotator``'s own default, 123, does not apply there).
The published annotations were made with it."""
BASELINE_ANSWER = "m"
"""The judge's one-token answer when it prefers ``output_1``."""
MODEL_ANSWER = "M"
"""The judge's one-token answer when it prefers ``output_2``."""

# alpaca_eval's scale: 1 when output_1 wins, 2 when output_2 wins (0 is an old draw).
FIRST_WINS = 1.0
DRAW = 1.5
SECOND_WINS = 2.0

_SWITCH_COLUMN = "is_switched_outputs"
# The whole placeholder, as alpaca_eval's make_prompts finds it: no whitespace inside.
_PLACEHOLDER = re.compile(r"\{(\S+?)\}")
_IM_START = "<|im_start|>"
_IM_END = "<|im_end|>"
_ROLES: dict[str, type[BaseMessage]] = {
    "system": SystemMessage,
    "user": HumanMessage,
    "assistant": AIMessage,
}


def load_judge_template(data_dir: Path | None = None) -> str:
    """The judge's chat-ml prompt template, read as alpaca_eval reads it.

    Args:
        data_dir: A data folder that replaces the packaged data (see `langchain_moa.eval.data`).

    Raises:
        FileNotFoundError: ``data_dir`` lacks the file; the message names it.
    """
    return load_text(JUDGE_TEMPLATE, data_dir)


def judge_messages(
    template: str, instruction: str, output_1: str, output_2: str
) -> list[BaseMessage]:
    """The messages alpaca_eval sends to the judge for one pair.

    Each placeholder is replaced once, in the order the template first names them, by
    plain string replacement: braces in the texts need no escaping, and a text that
    contains a later placeholder (``{output_2}`` in an instruction, say) has it filled
    as alpaca_eval does. The chat-ml text is then split as ``prompt_to_chatml`` splits
    it: one message per ``<|im_start|>role`` block, up to the first ``<|im_end|>``,
    stripped.

    Args:
        template: The chat-ml template, e.g. from `load_judge_template`.
        instruction: The instruction both outputs answer.
        output_1: The output shown as model ``m``.
        output_2: The output shown as model ``M``.

    Returns:
        System, user (and assistant) messages; ``system name=x`` blocks keep their name.

    Raises:
        ValueError: The template names another placeholder or one twice, or is not chat-ml.
    """
    fields = {"instruction": instruction, "output_1": output_1, "output_2": output_2}
    placeholders = _PLACEHOLDER.findall(template)
    prompt = template
    for name in dict.fromkeys(placeholders):
        if name not in fields or placeholders.count(name) != 1:
            msg = f"the judge template must name {{{name}}} once, and only {list(fields)}"
            raise ValueError(msg)
        prompt = prompt.replace("{" + name + "}", fields[name], 1)
    return _chatml_to_messages(prompt)


def _chatml_to_messages(prompt: str) -> list[BaseMessage]:
    prompt = prompt.strip()
    if not (prompt.startswith(_IM_START) and prompt.endswith(_IM_END)):
        msg = f"not a chat-ml prompt: {prompt[:40]!r}...{prompt[-40:]!r}"
        raise ValueError(msg)
    messages = []
    for block in prompt.split(_IM_START)[1:]:
        header, _, body = block.partition("\n")
        role = header.strip()
        content = body.split(_IM_END, 1)[0].strip()
        extra: dict[str, str] = {}
        if role.startswith("system") and role != "system":
            # "system name=example_user": few-shot turns, as in OpenAI's chat-ml.
            extra = dict(item.split("=", 1) for item in role.split("system", 1)[1].split())
            role = "system"
        if role not in _ROLES:
            msg = f"unknown chat-ml role {role!r}"
            raise ValueError(msg)
        messages.append(_ROLES[role](content=content, **extra))
    return messages


def is_swapped(instruction: str, *, seed: int = SEED) -> bool:
    """Whether alpaca_eval shows the model's output first (as ``m``) for this instruction.

    alpaca_eval seeds Python's ``random`` with ``"is_switched_outputs" + instruction +
    str(seed)`` and draws ``choices([False, True])``; the same instruction is therefore
    always shown in the same order, whichever model is evaluated.

    Args:
        instruction: The instruction, exactly as in the reference outputs.
        seed: The annotator's seed; `SEED` is what ``alpaca_eval evaluate`` uses.
    """
    # Not for security: a reproducible coin, seeded as alpaca_eval seeds it.
    rng = random.Random(_SWITCH_COLUMN + instruction + str(seed))  # noqa: S311 - see above
    return rng.choices((False, True))[0]


def preference_from_logprobs(top_logprobs: Sequence[Mapping[str, Any]]) -> float | None:
    """The judge's preference from its first token's top logprobs.

    alpaca_eval's ``logprob_parser`` (numerator ``m``, denominators ``m`` and ``M``, not
    binarised): ``2 - p(m)``, with ``p`` normalised over ``m`` and ``M``; a token missing
    from the top logprobs has probability 0. 1 means ``output_1`` is better, 2 ``output_2``.

    Args:
        top_logprobs: ``[{"token": ..., "logprob": ...}, ...]`` as OpenAI returns it in
            ``logprobs.content[0].top_logprobs``.

    Returns:
        The preference in [1, 2], or None when neither token is among the top logprobs
        or the list is malformed: alpaca_eval then gets NaN (or an error) and drops the
        pair from its annotations.
    """
    try:
        found = {
            entry["token"]: float(entry["logprob"])
            for entry in top_logprobs
            if entry["token"] in (BASELINE_ANSWER, MODEL_ANSWER)
        }
    except (KeyError, TypeError, ValueError):
        return None
    if not found:
        return None
    baseline = found.get(BASELINE_ANSWER, -math.inf)
    model = found.get(MODEL_ANSWER, -math.inf)
    highest = max(baseline, model)
    total = highest + math.log(math.exp(baseline - highest) + math.exp(model - highest))
    return 2.0 - math.exp(baseline - total)


def preference_from_text(text: str) -> float | None:
    """The preference from a judge's text answer, for judges without logprobs.

    Args:
        text: The judge's answer.

    Returns:
        1.0 for ``m``, 2.0 for ``M`` (after stripping whitespace), else None.
    """
    return {BASELINE_ANSWER: 1.0, MODEL_ANSWER: 2.0}.get(text.strip())


def unswap(preference: float, swapped: bool) -> float:  # noqa: FBT001 - is_swapped's result
    """The preference in the caller's order: ``3 - x`` when the outputs were swapped.

    Args:
        preference: The judge's preference in the order it was shown the outputs.
        swapped: What `is_swapped` said for the instruction.
    """
    return 3.0 - preference if swapped else preference


def first_token_top_logprobs(reply: BaseMessage) -> list[dict[str, Any]] | None:
    """The top logprobs of the reply's first token, where the judge's API gave them."""
    content = (reply.response_metadata.get("logprobs") or {}).get("content") or []
    return content[0].get("top_logprobs") if content else None


def logprob_judge(judge: BaseChatModel) -> BaseChatModel:
    """``judge`` asking for the top 5 logprobs, where its class can (OpenAI-style)."""
    fields = type(judge).model_fields
    if "logprobs" in fields and "top_logprobs" in fields:
        return judge.model_copy(update={"logprobs": True, "top_logprobs": TOP_LOGPROBS})
    return judge
