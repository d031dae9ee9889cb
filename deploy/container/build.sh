#!/usr/bin/env bash
# Builds the Cascade image with podman: localhost/cascade:<version> and
# localhost/cascade:latest. Run as root on Debian 12; installs podman, buildah,
# runc, debootstrap and podman-compose when missing.
#
# No registry is needed: when BASE is not given and the default Debian image
# cannot be pulled, the base is made here with debootstrap (Debian 12
# minbase) and imported as localhost/cascade-base:bookworm, once.
#
# Environment:
#   BASE            base image (default: localhost/cascade-base:bookworm,
#                   made when missing; docker.io/library/debian:bookworm-slim
#                   works where a registry is reachable)
#   CASCADE_IMAGE   image name (default localhost/cascade)
#   MIRROR          Debian mirror for debootstrap (default deb.debian.org)
#   CONTAINERS_CONF podman's configuration (default: one this script writes,
#                   see below)
set -euo pipefail
cd "$(dirname "$0")/../.."

image=${CASCADE_IMAGE:-localhost/cascade}
version=$(sed -n 's/^project(cascade VERSION \([0-9.]*\).*/\1/p' CMakeLists.txt)
base=${BASE:-localhost/cascade-base:bookworm}
mirror=${MIRROR:-http://deb.debian.org/debian}

# one build at a time (two test programs may ask at once)
mkdir -p /var/lib/cascade-build
exec 9>/var/lib/cascade-build/build.lock
flock 9

need=()
for p in podman buildah runc debootstrap podman-compose; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}" \
    >/dev/null || { apt-get update -q >/dev/null &&
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${need[@]}"; }
fi

# podman 4.3 on Debian 12 defaults to crun, which is not installed with it
# here, and asks for ulimits above the hard limits of a container host
# (nproc above 32768 is refused too): a configuration of our own.
if [ -z "${CONTAINERS_CONF:-}" ]; then
  conf=/var/lib/cascade-build/containers.conf
  hn=$(ulimit -Hn); hu=$(ulimit -Hu)
  [ "$hu" = unlimited ] || [ "$hu" -gt 32768 ] && hu=32768
  cat > "$conf" <<CONF
[containers]
default_ulimits = ["nofile=$hn:$hn", "nproc=$hu:$hu"]
[engine]
runtime = "runc"
CONF
  export CONTAINERS_CONF=$conf
fi

if [ "$base" = localhost/cascade-base:bookworm ] && ! podman image exists "$base"; then
  root=$(mktemp -d /var/tmp/cascade-rootfs.XXXXXX)
  trap 'rm -rf "$root"' EXIT
  echo "making $base with debootstrap (Debian 12 minbase) from $mirror"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
  # what an image needs no copy of: downloaded packages, indexes, docs
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
         "$root"/usr/share/locale/* \
         "$root"/var/log/*.log "$root"/var/cache/debconf/*-old
  tar -C "$root" -c . | podman import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["/bin/bash"]' - "$base" >/dev/null
  rm -rf "$root"
  trap - EXIT
fi

podman build --network host --build-arg "BASE=$base" -f deploy/container/Containerfile \
  -t "$image:$version" -t "$image:latest" . 
echo "built $image:$version ($(podman image inspect --format '{{.Size}}' "$image:$version" |
  awk '{printf "%.0f MB", $1 / 1e6}'))"
