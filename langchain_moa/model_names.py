"""Models by name, as the command line takes them: a preset, ``local-model``, ``provider:model``."""

from __future__ import annotations

from langchain_core.language_models import BaseChatModel

from langchain_moa.chat_models import ChatMoA
from langchain_moa.stacks import LOCAL_MODEL, PRESETS, ModelConfig, StackError, chat_model


def model_from_spec(
    spec: str, *, max_tokens: int | None = None, temperature: float | None = None
) -> BaseChatModel:
    """The chat model a name stands for.

    A preset is a whole ``ChatMoA``; ``local-model`` the embedded model;
    anything else a ``"provider:model"`` string.
    ``max_tokens`` and ``temperature`` configure every model it names. This
    is how ``moa eval`` takes ``--model`` and ``--judge``.

    Raises:
        StackError: the name is no preset and no usable model, or a preset's
            key is not in the environment.
    """
    settings = {
        k: v for k, v in (("max_tokens", max_tokens), ("temperature", temperature)) if v is not None
    }
    if spec in PRESETS:
        return ChatMoA(preset=spec, **settings)
    if spec == LOCAL_MODEL:
        return chat_model(ModelConfig(model=LOCAL_MODEL, seed=0), settings)
    if ":" not in spec:
        names = ", ".join(repr(name) for name in (*PRESETS, LOCAL_MODEL))
        msg = f"unknown model {spec!r}: use a preset ({names}) or 'provider:model'"
        raise StackError(msg)
    return chat_model(spec, settings)
