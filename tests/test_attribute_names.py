"""We own the GenAI attribute names: the semantic-conventions package's gen_ai constants are
deprecated from 0.65b0 on, so importing the library must not load them."""

from __future__ import annotations

import subprocess
import sys

from aiohttp_llm_tracing import _attributes as A


def test_the_library_never_imports_the_deprecated_gen_ai_constants() -> None:
    script = (
        "import sys, aiohttp_llm_tracing, aiohttp_llm_tracing.adapters; "
        "print(any('gen_ai' in m for m in sys.modules if m.startswith('opentelemetry.semconv')))"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_gen_ai_names_are_the_conventions_own() -> None:
    names = {k: v for k, v in vars(A).items() if k.startswith("GEN_AI_")}
    assert len(names) >= 28
    for constant, value in names.items():
        # GEN_AI_USAGE_INPUT_TOKENS -> gen_ai.usage.input_tokens, and so on: same spelling.
        assert value.startswith("gen_ai."), constant
        assert value.replace(".", "_").upper().replace("GEN_AI_", "", 1) in constant
