#!/usr/bin/env bash
# Runs the native code's tests against a build with AddressSanitizer and UndefinedBehaviorSanitizer
# (docs/relay.md, "Native listeners"): out-of-bounds reads and writes, use after free and undefined
# behaviour in splice.c and listen.c stop the run with a report. Not part of `npm test` (the
# sanitizers slow every test several times); run it after changing the C code.
#   bash k8s-agent/native/check-asan.sh [vitest file or filter ...]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
include="$(dirname "$(command -v node)")/../include/node"
out=$(mktemp -d)/hopway-splice-asan.node
cc -std=c11 -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -Wall -Wextra -Werror -fPIC -shared \
  -pthread -DNAPI_VERSION=8 -DNODE_GYP_MODULE_NAME=hopway_splice -I"$include" \
  "$here/splice.c" "$here/listen.c" -o "$out"
preload="$(cc -print-file-name=libasan.so) $(cc -print-file-name=libubsan.so)"
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  tests=(k8s-agent/test/unit/relay/native-listen.test.ts k8s-agent/test/unit/relay/native-splice.test.ts
    k8s-agent/test/unit/relay/native-pipe.test.ts k8s-agent/test/unit/relay/links.test.ts
    k8s-agent/test/unit/listeners)
fi
cd "$root"
# Leak checking would report V8's and Node's own long-lived allocations; the sanitizers' errors abort.
LD_PRELOAD="$preload" ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  HOPWAY_SPLICE_ADDON="$out" npx vitest run --project unit "${tests[@]}"
