"""``python -m langchain_moa.cli``: the ``moa`` command."""

from langchain_moa.cli import main

raise SystemExit(main())
