#!/usr/bin/env bash
# Debian packages behind the real components the tests start: PostgreSQL (storage tests), Chromium (browser tests).
# Idempotent; skipped quietly when not root (a developer laptop installs them by hand).
set -euo pipefail
needed=()
command -v /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || needed+=(postgresql)
[ -x /usr/bin/chromium ] || needed+=(chromium)
if [ ${#needed[@]} -eq 0 ]; then exit 0; fi
if [ "$(id -u)" != 0 ]; then
  echo "note: not root, not installing ${needed[*]}; tests that need them are skipped" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${needed[@]}" >/dev/null
