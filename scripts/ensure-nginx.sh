#!/usr/bin/env bash
# Print the path of an nginx binary for the benchmarks' HTTP target, installing Debian's nginx when it is missing.
# The package lists of a fresh machine may be empty or stale, so a failed install is retried after apt-get update.
# Prints nothing (and says why on stderr) when nginx is missing and cannot be installed.
set -u
find_nginx() { command -v nginx 2>/dev/null || { [ -x /usr/sbin/nginx ] && echo /usr/sbin/nginx; }; }
found=$(find_nginx)
if [ -n "$found" ]; then echo "$found"; exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "the benchmarks need nginx: install Debian's nginx package (apt-get install nginx)" >&2
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
install() { apt-get install -y -qq --no-install-recommends nginx >&2; }
install || { apt-get update -qq >&2 && install; } || echo "apt-get could not install nginx" >&2
# Debian's package starts the system nginx (port 80) that this install brought; the benchmarks start their own.
installed=$(find_nginx)
if [ -n "$installed" ] && [ -s /run/nginx.pid ]; then "$installed" -s quit >&2 2>/dev/null || true; fi
echo "$installed"
