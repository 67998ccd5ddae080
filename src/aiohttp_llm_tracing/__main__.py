"""``python -m aiohttp_llm_tracing``: the same command line as ``aiohttp-llm-tracing``."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
