#!/bin/sh
# semantic_eval.sh — build the library, then score the builtin embedder
# with the semantic index alone on a labelled routing file (default: the
# shared dev set): accuracy and per-route P/R/F1 for the centroid, max
# and average comparisons, conversation vs last user message, the mean
# over 5 example splits, and the embedding speed.
#   tests/eval/semantic_eval.sh [FILE.jsonl] [--no-idf]
# Informational: exits 0 unless the input is bad (2).
set -e
cd "$(dirname "$0")/../.."
BUILD=${BUILD:-build}
make --no-print-directory -s BUILD="$BUILD" "$BUILD/libumbra.a" >&2
mkdir -p "$BUILD/eval"
${CC:-cc} -std=c11 -D_GNU_SOURCE -O2 -Wall -Wextra -Werror -Isrc \
	tests/eval/semantic_eval.c "$BUILD/libumbra.a" \
	-levent_core -levent_pthreads -lcurl -lnghttp2 -lssl -lcrypto -lyaml \
	-lsqlite3 -lpq -lpcre2-8 -lcjson -lm -pthread -o "$BUILD/eval/semantic_eval"
exec "$BUILD/eval/semantic_eval" "$@"
