#!/usr/bin/env bash
# Installs the Debian packages whose programs the tests and benchmarks run as
# real peers, skipping what is already there. Safe to run repeatedly.
set -euo pipefail
need=()
have() { command -v "$1" >/dev/null 2>&1; }
have promtool || need+=(prometheus)
have prometheus || need+=(prometheus)
have redis-server || need+=(redis-server)
have redis-benchmark || need+=(redis-tools)
have curl || need+=(curl)
have ncat || need+=(ncat)
have chromium || need+=(chromium)
have openssl || need+=(openssl)
# The relay's native splice is compiled by `npm install` (k8s-agent/native/build.mjs), which
# runs after this script in .ci/run.
have cc || need+=(gcc libc6-dev)
# `kubectl kustomize` builds the deploy manifests for their tests. Debian has no
# `kubectl` package of its own; its kubernetes-client (1.20, kustomize v2) is
# the fallback; the tests need kustomize v5 (kubectl >= 1.27) and say so if it is older.
have kubectl || need+=(kubernetes-client)
if [ "${1:-}" = "--bench" ]; then
  have haproxy || need+=(haproxy)
  have iperf3 || need+=(iperf3)
  have socat || need+=(socat)
fi
if [ ${#need[@]} -gt 0 ]; then
  mapfile -t need < <(printf '%s\n' "${need[@]}" | sort -u)
  echo "system-deps: installing ${need[*]}"
  sudo_cmd=""
  [ "$(id -u)" -eq 0 ] || sudo_cmd="sudo"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
