#!/usr/bin/env bash
# Builds the tasker-go application image without any registry: static CGO_ENABLED=0 linux
# binaries (tasker: worker/orchestrator/migrate/...; tasker-chaos: the instrumented worker of
# the chaos tests) plus the example templates and data, in a generated context, FROM scratch.
#
#   TASKER_APP_IMAGE  image name (default tasker-go/app:dev)
#   GOARCH            target architecture (default: the Docker engine's)
#
# Inside the image: /usr/local/bin/{tasker,tasker-chaos}, /app/templates (TASKER_TEMPLATE_PATH),
# /app/data/products.csv. Entrypoint: tasker. Runs as uid 65534.
set -euo pipefail
cd "$(dirname "$0")/.."

IMAGE="${TASKER_APP_IMAGE:-tasker-go/app:dev}"
GO="${GO:-go}"
arch="${GOARCH:-}"
if [ -z "$arch" ]; then
  arch="$(docker version --format '{{.Server.Arch}}' 2>/dev/null | tr -d '[:space:]')" || arch=""
  [ -n "$arch" ] || arch="$("$GO" env GOARCH)"
fi

ctx="$(mktemp -d)"
trap 'rm -rf "$ctx"' EXIT
mkdir -p "$ctx/bin" "$ctx/app"

echo "app-image: building static linux/$arch binaries"
CGO_ENABLED=0 GOOS=linux GOARCH="$arch" "$GO" build -trimpath -ldflags='-s -w' -o "$ctx/bin/" ./cmd/tasker ./cmd/tasker-chaos

# A dynamically linked binary would not start on scratch (no loader, no libc).
for b in "$ctx"/bin/*; do
  if command -v readelf >/dev/null 2>&1 && readelf -l "$b" | grep -q 'INTERP'; then
    echo "app-image: $b is not static (it has a program interpreter)" >&2
    exit 1
  fi
done

cp -R examples/templates "$ctx/app/templates"
rm -f "$ctx/app/templates/README.md"
mkdir -p "$ctx/app/data"
cp examples/data/*.csv "$ctx/app/data/"

cat >"$ctx/Dockerfile" <<'EOF'
FROM scratch
COPY bin/ /usr/local/bin/
COPY app/ /app/
ENV PATH=/usr/local/bin TASKER_TEMPLATE_PATH=/app/templates TASKER_LOG_FORMAT=json
WORKDIR /app
USER 65534:65534
ENTRYPOINT ["/usr/local/bin/tasker"]
EOF

echo "app-image: docker build -t $IMAGE"
# The legacy builder needs no BuildKit/buildx plugin; its deprecation notice is dropped.
if ! out="$(DOCKER_BUILDKIT=0 docker build -q -t "$IMAGE" "$ctx" 2>&1)"; then
  echo "$out" >&2
  exit 1
fi
echo "app-image: built $IMAGE"
