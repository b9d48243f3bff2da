#!/usr/bin/env bash
# Make sure Debian's chromium is installed for the console's browser tests (tests/e2e/test_console.py).
# Playwright drives it through its executable path; Playwright's own browser downloads are never used.
# As root, install it with apt when it is missing; otherwise say what to run (the tests then fail with that reason
# under CI=true).
set -euo pipefail
CHROMIUM=/usr/bin/chromium
if [[ -x "$CHROMIUM" ]]; then
  exit 0
fi
if [[ "$(id -u)" == "0" ]] && command -v apt-get >/dev/null; then
  echo "installing chromium for the console's browser tests" >&2
  DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >&2
  exit 0
fi
echo "warning: $CHROMIUM is missing; install it with: sudo apt-get install -y chromium" >&2
