#!/usr/bin/env bash
# Builds a local PostgreSQL 15 image from Debian packages, without any container registry:
# debootstrap a minimal bookworm root with postgresql-15, then `docker import` it.
# Reuses the image when it already exists (set FORCE=1 to rebuild).
set -euo pipefail

IMAGE="${TASKER_TEST_PG_IMAGE:-tasker-go/postgres:15}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if [ "${FORCE:-0}" != "1" ] && docker image inspect "$IMAGE" >/dev/null 2>&1; then
  echo "pg-image: $IMAGE already present"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "pg-image: installing debootstrap"
  if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
  else sudo apt-get update -qq && sudo apt-get install -y -qq debootstrap >/dev/null; fi
fi

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
echo "pg-image: debootstrap bookworm + postgresql-15 into $work/rootfs"
debootstrap --variant=minbase --include=postgresql-15 bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 || {
  tail -n 30 "$work/debootstrap.log"; exit 1; }
# Drop caches the image does not need.
rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
echo "pg-image: importing as $IMAGE"
tar -C "$work/rootfs" -c . | docker import \
  --change 'ENV PATH=/usr/lib/postgresql/15/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'USER postgres' \
  - "$IMAGE" >/dev/null
echo "pg-image: built $IMAGE"
