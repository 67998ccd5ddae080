#!/usr/bin/env bash
# Run the rotel collector (pip install rotel) as a bridge: it takes OTLP/gRPC from
# setup_tracing(exporter="otlp") on 127.0.0.1:4317 and forwards the traces to Langfuse over
# OTLP/HTTP with Basic auth and x-langfuse-ingestion-version: 4. Langfuse accepts no gRPC.
#
#   export LANGFUSE_PUBLIC_KEY=pk-lf-... LANGFUSE_SECRET_KEY=sk-lf-...
#   export LANGFUSE_HOST=https://cloud.langfuse.com        # optional; or your region / self-hosted
#   bash examples/collector/rotel.sh                       # foreground; Ctrl-C stops it
#
# Optional: ROTEL_GRPC_ENDPOINT (default 127.0.0.1:4317), ROTEL_HTTP_ENDPOINT (127.0.0.1:4318),
# ROTEL_BIN (default: the rotel-agent bundled with the rotel package of $PYTHON or python3).
# Other ROTEL_* variables (ROTEL_BATCH_TIMEOUT, ROTEL_LOG_FILE, ROTEL_PID_FILE...) are read by
# rotel itself; see `rotel-agent start --help`.
set -euo pipefail

: "${LANGFUSE_PUBLIC_KEY:?set LANGFUSE_PUBLIC_KEY (Langfuse project settings > API keys)}"
: "${LANGFUSE_SECRET_KEY:?set LANGFUSE_SECRET_KEY}"
host="${LANGFUSE_HOST:-${LANGFUSE_BASE_URL:-https://cloud.langfuse.com}}"
host="${host%/}"
grpc_endpoint="${ROTEL_GRPC_ENDPOINT:-127.0.0.1:4317}"
http_endpoint="${ROTEL_HTTP_ENDPOINT:-127.0.0.1:4318}"

if [[ -z "${ROTEL_BIN:-}" ]]; then
    python="${PYTHON:-python3}"
    ROTEL_BIN="$("$python" -c 'import os, rotel; print(os.path.join(os.path.dirname(rotel.__file__), "rotel-agent"))')" || {
        echo "rotel is not installed for $python: pip install rotel (or set ROTEL_BIN)" >&2
        exit 1
    }
fi

token="$(printf '%s:%s' "$LANGFUSE_PUBLIC_KEY" "$LANGFUSE_SECRET_KEY" | base64 | tr -d '\n')"

echo "rotel: OTLP/gRPC on $grpc_endpoint -> $host/api/public/otel/v1/traces" >&2
# exec: the collector takes this script's PID, so whoever started the script can stop it.
# rotel insists on --otlp-exporter-endpoint even with metrics and logs off; the traces endpoint
# is the full Langfuse path, since Langfuse answers 404 on anything shorter.
exec "$ROTEL_BIN" start \
    --otlp-grpc-endpoint "$grpc_endpoint" \
    --otlp-http-endpoint "$http_endpoint" \
    --otlp-receiver-metrics-disabled \
    --otlp-receiver-logs-disabled \
    --exporter otlp \
    --otlp-exporter-protocol http \
    --otlp-exporter-endpoint "$host" \
    --otlp-exporter-traces-endpoint "$host/api/public/otel/v1/traces" \
    --otlp-exporter-compression gzip \
    --otlp-exporter-custom-headers "Authorization=Basic $token,x-langfuse-ingestion-version=4"
