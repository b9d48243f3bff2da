#!/usr/bin/env bash
# Build create-and-list offline against Debian's Go packages (scripts/ensure-go.sh installs them) and print its path.
# The stubs are generated from the protos at build time, into a GOPATH workspace (var/go unless an argument names
# another) under the import path of the protos' go_package, pacer.dev/api/pacer/control/v1. GOPATH mode
# (GO111MODULE=off) with /usr/share/gocode on GOPATH resolves google.golang.org/grpc and google.golang.org/protobuf
# to Debian's copies, so nothing is fetched from the Go module proxy. CGO_ENABLED=0: the client is pure Go, and a
# static binary needs no C compiler.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
workspace=${1:-$root/var/go}
mkdir -p "$workspace/src" "$workspace/bin"
protoc -I "$root/protos" --go_out="$workspace/src" --go-grpc_out="$workspace/src" pacer/control/v1/control_service.proto
cd "$here"
CGO_ENABLED=0 GO111MODULE=off GOPATH="$workspace:/usr/share/gocode" go build -o "$workspace/bin/create-and-list" .
echo "$workspace/bin/create-and-list"
