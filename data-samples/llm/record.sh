#!/bin/sh
# Re-records data-samples/llm/recorded/ from the hand-written answers in authored/: serves them on
# loopback as an OpenAI-compatible endpoint and runs a live build against it, so the recording is
# made by codegym's own client. Run from the repository root after changing a prompt or an answer.
set -eu
work=$(mktemp -d)
trap 'kill $server 2>/dev/null; rm -rf "$work"' EXIT
python3 data-samples/llm/serve_authored.py "$work/port" &
server=$!
while [ ! -s "$work/port" ]; do sleep 0.1; done
OPENAI_BASE_URL="http://127.0.0.1:$(cat "$work/port")/v1" OPENAI_API_KEY=unused \
  cargo run --quiet -- build --llm openai --data "$work/build" --quiet
mkdir -p data-samples/llm/recorded
# One line per call, sorted by call id: the file does not depend on the order answers arrived in.
sort "$work/build/llm/responses.jsonl" > data-samples/llm/recorded/responses.jsonl
echo "recorded $(wc -l < data-samples/llm/recorded/responses.jsonl) calls in data-samples/llm/recorded/responses.jsonl"
