#!/usr/bin/env bash
# Print the path of promtool for the deployment tests (`promtool check rules` and `promtool test rules` on
# deploy/monitoring/alerts.yaml), installing Debian's prometheus package (which ships promtool) when it is missing.
# The package lists of a fresh machine may be empty or stale, so a failed install is retried after apt-get update.
# Prints nothing (and says why on stderr) when promtool is missing and cannot be installed.
set -u
found=$(command -v promtool 2>/dev/null)
if [ -n "$found" ]; then echo "$found"; exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "the deployment tests need promtool: install Debian's prometheus package (apt-get install prometheus)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends prometheus >&2; }
install || { apt-get update -qq >&2 && install; } || echo "apt-get could not install prometheus" >&2
command -v promtool 2>/dev/null || true
