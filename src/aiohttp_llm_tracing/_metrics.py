"""The GenAI and HTTP client metrics, recorded once per request when its span ends.

* ``gen_ai.client.token.usage`` (``{token}``, by ``gen_ai.token.type`` input/output) and
  ``gen_ai.client.operation.duration`` (s) for every LLM call,
  ``gen_ai.client.operation.time_to_first_chunk`` (s) for streamed ones;
* ``http.client.request.duration`` (s) for every other request.

Bucket boundaries and attributes are the semantic conventions' own. They are recorded at the
end of the call, from the span's final attributes, so the duration of a stream is the stream's
and not its headers' (the metric and the span agree). A request whose span the sampler dropped
is recorded all the same (``HttpSpan`` works out its end for the metrics alone). With no meter
provider configured (the global one still the API's placeholder), nothing is built per request:
metrics cost nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import MeterProvider

from . import _attributes as A
from ._version import __version__

__all__ = ["Metrics"]

_TOKEN_BUCKETS = [1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304]
_TOKEN_BUCKETS += [16777216, 67108864]
_GEN_AI_SECONDS = [0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48]
_GEN_AI_SECONDS += [40.96, 81.92]
_HTTP_SECONDS = [0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10]
_GEN_AI_KEYS = (
    A.GEN_AI_OPERATION_NAME,
    A.GEN_AI_PROVIDER_NAME,
    A.GEN_AI_REQUEST_MODEL,
    A.GEN_AI_RESPONSE_MODEL,
    A.SERVER_ADDRESS,
    A.SERVER_PORT,
    A.ERROR_TYPE,
)
_HTTP_KEYS = (
    A.HTTP_REQUEST_METHOD,
    A.HTTP_RESPONSE_STATUS_CODE,
    A.SERVER_ADDRESS,
    A.SERVER_PORT,
    A.NETWORK_PROTOCOL_VERSION,
    A.ERROR_TYPE,
)

_TOKEN_TYPES = ((A.GEN_AI_USAGE_INPUT_TOKENS, "input"), (A.GEN_AI_USAGE_OUTPUT_TOKENS, "output"))


class Metrics:
    """The instruments of one trace config, from ``meter_provider`` (the global one if None)."""

    __slots__ = (
        "_enabled",
        "_provider",
        "duration",
        "http_duration",
        "time_to_first_chunk",
        "tokens",
    )

    def __init__(self, meter_provider: MeterProvider | None, schema_url: str) -> None:
        self._enabled = False
        self._provider = meter_provider or metrics.get_meter_provider()
        meter = metrics.get_meter(
            "aiohttp_llm_tracing", __version__, self._provider, schema_url=schema_url
        )
        self.tokens = meter.create_histogram(
            "gen_ai.client.token.usage",
            unit="{token}",
            description="Number of input and output tokens used.",
            explicit_bucket_boundaries_advisory=_TOKEN_BUCKETS,
        )
        self.duration = meter.create_histogram(
            "gen_ai.client.operation.duration",
            unit="s",
            description="GenAI operation duration.",
            explicit_bucket_boundaries_advisory=_GEN_AI_SECONDS,
        )
        self.time_to_first_chunk = meter.create_histogram(
            "gen_ai.client.operation.time_to_first_chunk",
            unit="s",
            description="Time to receive the first chunk of a streamed response.",
            explicit_bucket_boundaries_advisory=_GEN_AI_SECONDS,
        )
        self.http_duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests.",
            explicit_bucket_boundaries_advisory=_HTTP_SECONDS,
        )

    @property
    def enabled(self) -> bool:
        """Whether a real meter provider is behind the instruments (checked per request: the
        application may configure one after building its sessions)."""
        if self._enabled:
            return True
        # The API's placeholder until a provider is set; nothing can be recorded through it.
        # Once set, the global provider cannot be replaced, so a yes is final.
        self._enabled = getattr(self._provider, "_real_meter_provider", True) is not None
        return self._enabled

    def record(
        self,
        start: Mapping[str, Any],
        end: Mapping[str, Any],
        duration: float,
        llm: bool,
    ) -> None:
        """Record one finished request from the attributes its span started and ended with
        (``end`` wins where both have a key)."""
        if not llm:
            self.http_duration.record(duration, _pick(start, end, _HTTP_KEYS))
            return
        common = _pick(start, end, _GEN_AI_KEYS)
        self.duration.record(duration, common)
        ttfc = end.get(A.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK)
        if isinstance(ttfc, float):
            self.time_to_first_chunk.record(ttfc, common)
        for key, kind in _TOKEN_TYPES:
            count = end.get(key)
            if isinstance(count, int) and not isinstance(count, bool) and count >= 0:
                self.tokens.record(count, {**common, A.GEN_AI_TOKEN_TYPE: kind})


def _pick(
    start: Mapping[str, Any], end: Mapping[str, Any], keys: tuple[str, ...]
) -> dict[str, Any]:
    out = {}
    for key in keys:
        if key in end:
            out[key] = end[key]
        elif key in start:
            out[key] = start[key]
    return out
