#!/usr/bin/env bash
# demo.sh up|down: a local fleet cluster of real hosts with a Docker unit on it.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=/usr/local/go/bin:$PATH CGO_ENABLED=0
case "${1:-up}" in
  up)
    go build -trimpath -o bin/hello ./functional/fixtures/hello
    go run ./functional/demo up -bin bin -unit examples/hello.service ;;
  down)
    go run ./functional/demo down ;;
  *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
