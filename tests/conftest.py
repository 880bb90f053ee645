"""What every test starts from: no tracing and no provider keys, here and in every child.

A developer's shell may hold ``LANGSMITH_TRACING`` and a LangSmith key, or an
OpenAI key: a test, or a process it starts (which inherits this environment),
would then send traces out or call a paid API. They are removed before any test
runs; a test that needs a key or a setting sets its own.
"""

from __future__ import annotations

import os
import re

import pytest

LEAKS = re.compile(
    r"^(LANGSMITH_|LANGCHAIN_)"  # tracing: LangSmith's, and LangChain's older names
    r"|(_API_KEY|_API_TOKEN|_ACCESS_TOKEN|_SECRET_KEY|_SECRET_ACCESS_KEY)$"  # provider keys
    r"|^(HF_TOKEN|HUGGING_FACE_HUB_TOKEN|OPENAI_BASE_URL|OPENAI_ORG_ID|OPENAI_PROJECT_ID)$"
)
"""Variables no test inherits."""


def pytest_configure(config: pytest.Config) -> None:
    """Drop the tracing variables and keys before the first test, for every child too."""
    for name in [name for name in os.environ if LEAKS.search(name)]:
        del os.environ[name]
