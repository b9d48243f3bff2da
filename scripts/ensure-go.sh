#!/usr/bin/env bash
# Make sure Debian's Go toolchain, protoc with the Go plugins, and the packaged gRPC and protobuf Go libraries are
# installed for the Go client example (examples/clients/go, run by tests/integration/test_clients.py). The example
# builds in GOPATH mode against /usr/share/gocode, never through the Go module proxy. golang/protobuf 1.5 is named
# because the gRPC package is also satisfied by 1.3, with which the example builds but panics on its first call:
# grpc-go 1.33 marshals through golang/protobuf, and 1.3 cannot read the stubs of today's protoc-gen-go.
# As root, install what is missing with apt (after apt-get update when the package lists are empty or stale);
# otherwise say what to run, and the test fails with that reason. Prints nothing.
set -u
PACKAGES=(golang-go protobuf-compiler protoc-gen-go protoc-gen-go-grpc golang-google-grpc-dev
  golang-google-protobuf-dev golang-github-golang-protobuf-1-5-dev)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" = 0 ]; then exit 0; fi
if [ "$(id -u)" != "0" ] || ! command -v apt-get >/dev/null; then
  echo "the Go client example needs: sudo apt-get install -y ${missing[*]}" >&2
  exit 0
fi
echo "installing ${missing[*]} for the Go client example" >&2
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
trap 'rm -f "$log"' EXIT
install() { apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; }
if ! install && ! { apt-get update -qq >"$log" 2>&1 && install; }; then
  cat "$log" >&2
  echo "apt-get could not install ${missing[*]}" >&2
fi
