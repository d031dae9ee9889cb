#!/usr/bin/env bash
# Installs the Debian 12 packages Cascade builds, runs and tests with, when
# any is missing. Run as root. Quiet when everything is there already.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config git ca-certificates
  # libraries (see CMakeLists.txt)
  libngtcp2-dev libngtcp2-crypto-gnutls-dev libgnutls28-dev libev-dev libyaml-dev
  libpq-dev libnng-dev libpcre2-dev libprotobuf-c-dev protobuf-c-compiler
  libmicrohttpd-dev libjansson-dev libcmocka-dev
  # running and testing
  postgresql-15 postgresql-client-15 python3 curl procps util-linux
  # real publishers and players in the media tests; nginx-rtmp as an external
  # origin in the cascade tests (and the peer of the media benchmark)
  ffmpeg nginx-light libnginx-mod-rtmp
  # a real browser playing HTTP-FLV with mpegts.js (tests/browser, test_flv_kinds)
  chromium
  # GStreamer's HTTP source and FLV demuxer as one more player (test_flv_kinds)
  gstreamer1.0-tools gstreamer1.0-plugins-good
)
# node and npm for that browser test: Debian's only when the commands are
# missing (a nodejs from elsewhere may bundle its own npm and conflict)
command -v node >/dev/null 2>&1 || packages+=(nodejs)
command -v npm >/dev/null 2>&1 || packages+=(npm)
if [ "${CASCADE_BENCH_DEPS:-0}" = 1 ]; then
  # ngtcp2-server/-client: the 1.x example peers of the QUIC benchmark
  packages+=(wrk apache2-utils ngtcp2-server ngtcp2-client)
fi

# The QUIC data plane needs ngtcp2 >= 1.11, which Debian 12 has only in
# bookworm-backports (main has 0.12.1). An older one installed counts as
# missing so that apt upgrades it.
ngtcp2_min=1.11
ngtcp2_dev=(libngtcp2-dev libngtcp2-crypto-gnutls-dev)

installed_version() {
  dpkg-query -W -f='${Status} ${Version}' "$1" 2>/dev/null |
    sed -n 's/^install ok installed //p' || true
}

missing=()
for p in "${packages[@]}"; do
  v=$(installed_version "$p")
  if [ -z "$v" ]; then
    missing+=("$p")
  elif [[ " ${ngtcp2_dev[*]} " == *" $p "* ]] && dpkg --compare-versions "$v" lt "$ngtcp2_min"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "missing Debian packages: ${missing[*]}; run as root (or install them) first" >&2
  exit 1
fi
echo "installing: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
if [[ " ${missing[*]}" == *ngtcp2* ]]; then
  sh "$(dirname "$0")/backports.sh"
fi
apt-get update -q
# The postgresql package would start a system cluster; we run our own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
fi
apt-get install -y -q --no-install-recommends "${missing[@]}"
