#!/bin/sh
# Enables bookworm-backports for ngtcp2 >= 1.11 only: the QUIC data plane
# needs it and Debian 12's main archive has 0.12.1. Only the ngtcp2 packages
# (and libnghttp3-9, which the example peers need) are pinned to backports;
# everything else there keeps the default priority 100, so no other package
# moves. Used by deploy/local/deps.sh and deploy/container/Containerfile.
# Run as root; apt-get update afterwards.
set -eu
cat > /etc/apt/sources.list.d/cascade-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
cat > /etc/apt/preferences.d/cascade-ngtcp2 <<'PIN'
Package: libngtcp2-dev libngtcp2-16 libngtcp2-crypto-gnutls-dev libngtcp2-crypto-gnutls8 ngtcp2-server ngtcp2-client libnghttp3-9
Pin: release n=bookworm-backports
Pin-Priority: 990
PIN
