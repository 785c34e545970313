#!/bin/sh
# pii_eval.sh — build the library, then score the PII detectors on a
# labelled JSON-lines file (default: the shared dev set).
#   tests/eval/pii_eval.sh [FILE.jsonl] [--distinct] [--show-errors]
# Exits non-zero if any detector is below 0.98 precision or recall.
set -e
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
FILE=../shared/data/pii-dev.jsonl
case "${1:-}" in
--*|"") ;;
*) FILE=$1; shift ;;
esac
make --no-print-directory -s BUILD="$BUILD" "$BUILD/libumbra.a" >&2
mkdir -p "$BUILD/eval"
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Isrc \
	tests/eval/pii_eval.c "$BUILD/libumbra.a" \
	-levent_core -levent_pthreads -lcurl -lnghttp2 -lssl -lcrypto -lyaml \
	-lsqlite3 -lpq -lpcre2-8 -lcjson -lm -pthread -o "$BUILD/eval/pii_eval"
exec "$BUILD/eval/pii_eval" "$FILE" "$@"
