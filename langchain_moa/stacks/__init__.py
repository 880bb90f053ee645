"""Stacks: the stack spec, named stacks, stack files and the model factory.

Data flows one way: a spec (from ``ChatMoA``'s fields, a file, a preset or
the command line) is validated in ``spec``, and ``factory`` builds its chat
models; the graph and ``ChatMoA`` are built from those.
"""

from langchain_moa.stacks.errors import StackError
from langchain_moa.stacks.factory import Stack, build_stack, chat_model, model_label
from langchain_moa.stacks.files import load_config, load_stack
from langchain_moa.stacks.spec import (
    LOCAL_MOA,
    LOCAL_MODEL,
    PRESETS,
    DeadlineStart,
    EarlyStop,
    Fanout,
    LayerPolicy,
    ModelConfig,
    ModelEntry,
    Policy,
    ProviderLimit,
    ReferenceFilter,
    ReferenceFormat,
    ReferenceOrder,
    StackSpec,
)
from langchain_moa.stacks.strategy import (
    STRATEGIES,
    Rank,
    RankThenSynthesize,
    SelfMoA,
    SelfMoASeq,
    Staircase,
    Strategy,
    Synthesize,
    register,
)

__all__ = [
    "LOCAL_MOA",
    "LOCAL_MODEL",
    "PRESETS",
    "STRATEGIES",
    "DeadlineStart",
    "EarlyStop",
    "Fanout",
    "LayerPolicy",
    "ModelConfig",
    "ModelEntry",
    "Policy",
    "ProviderLimit",
    "Rank",
    "RankThenSynthesize",
    "ReferenceFilter",
    "ReferenceFormat",
    "ReferenceOrder",
    "SelfMoA",
    "SelfMoASeq",
    "Stack",
    "StackError",
    "StackSpec",
    "Staircase",
    "Strategy",
    "Synthesize",
    "build_stack",
    "chat_model",
    "load_config",
    "load_stack",
    "model_label",
    "register",
]
