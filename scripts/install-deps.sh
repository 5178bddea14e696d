#!/usr/bin/env bash
# Installs every Debian 12 package that zk2etcd's build, tests and benchmarks need.
#
# Idempotent and non-interactive: packages already present are not touched, and package
# maintainer scripts are not allowed to start system services (etcd-server, redis-server and
# zookeeper try to), because tests start their own servers on free loopback ports.
# This is the project's only install step; README.md lists the same packages.
# Usage: install-deps.sh [--build-only]
set -euo pipefail

# What building the zk2etcd binary needs (--build-only installs just these, e.g. in a Dockerfile).
readonly BUILD_PACKAGES=(
  build-essential cmake ninja-build pkg-config git
  libasio-dev libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc
  libhiredis-dev libssl-dev libyaml-cpp-dev
  # used at build time to unpack etcd's .proto files from golang-etcd-server-dev
  dpkg-dev
)
PACKAGES=(
  "${BUILD_PACKAGES[@]}"
  # fuzzing, formatting
  clang llvm libclang-rt-14-dev clang-format
  # the official ZooKeeper C client: tests' oracle and benchmarks' reference
  libzookeeper-mt-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev googletest libbenchmark-dev
  # real servers for integration tests (never started as services)
  zookeeper default-jre-headless etcd-server etcd-client redis-server redis-tools openssl
  # tooling used by tests: promtool, curl
  prometheus curl
)
if [[ ${1:-} == --build-only ]]; then PACKAGES=("${BUILD_PACKAGES[@]}"); fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "install-deps: must run as root (or with sudo available)" >&2; exit 1
  fi
fi

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  echo "install-deps: all ${#PACKAGES[@]} packages already installed"
  exit 0
fi

echo "install-deps: installing ${#missing[@]} packages: ${missing[*]}"
# policy-rc.d exit 101 tells invoke-rc.d not to start services; we remove it afterwards only if
# we created it. On systemd-less containers this is the only thing that stops the postinst
# scripts from launching etcd and redis.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e $policy ]]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 755 "$policy"
  created_policy=1
fi
cleanup() { if [[ $created_policy -eq 1 ]]; then $SUDO rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt_opts=(-q -y -o Dpkg::Use-Pty=0 -o APT::Install-Recommends=false)
if ! $SUDO apt-get "${apt_opts[@]}" install "${missing[@]}" >/tmp/zk2etcd-apt.log 2>&1; then
  # The package lists may be stale or absent on a fresh machine.
  $SUDO apt-get -q update >>/tmp/zk2etcd-apt.log 2>&1
  if ! $SUDO apt-get "${apt_opts[@]}" install "${missing[@]}" >>/tmp/zk2etcd-apt.log 2>&1; then
    tail -n 30 /tmp/zk2etcd-apt.log >&2
    echo "install-deps: apt-get install failed; full log in /tmp/zk2etcd-apt.log" >&2
    exit 1
  fi
fi

# Some packages still start their service via systemd or leave one running; tests need the
# default ports free and no stray servers, so stop what the packages may have started.
for svc in etcd redis-server zookeeper; do
  if command -v systemctl >/dev/null && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl stop "$svc" || true
    $SUDO systemctl disable "$svc" >/dev/null 2>&1 || true
  fi
done
echo "install-deps: done"
