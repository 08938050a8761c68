#!/bin/sh
# Install, idempotently, every Debian 12 package that building, testing, the
# demo and the benchmarks of cext3 need.
#
#   scripts/install-deps.sh            install what is missing (needs root)
#   scripts/install-deps.sh --check    list what is missing; exit 1 if anything is
#   scripts/install-deps.sh --ensure   install if root, else print the command and exit 1
set -eu

# One line per package, with what needs it.
PACKAGES="
g++                 build: compiler
make                build
cmake               build
pkg-config          build: finds the libraries below
libext2fs-dev       build: libext2fs, the real ext3 logic
comerr-dev          build: libext2fs error tables
libaio-dev          build: asynchronous O_DIRECT I/O
libcli11-dev        build: command-line parsing
libyaml-cpp-dev     build: jcoord configuration
catch2              build: unit tests
libfuse3-dev        build: jcoord mount
fuse3               run: jcoord mount
libnbd-dev          build: NBD backend
libnbd-bin          tests: nbdinfo
nbdkit              tests: a real NBD server for the NBD backend tests
e2fsprogs           tests/demo: mke2fs, e2fsck, debugfs (the oracles)
mount               tests/demo: mount, umount, losetup (the kernel oracle)
util-linux          tests: flock, blkid
python3             tests: corpus and crash-state scripts
attr                tests: setfattr/getfattr for the corpus
acl                 tests: setfacl for the corpus
procps              tests: pkill, ps
psmisc              tests: fuser
xz-utils            tests: tarballs
rsync               tests: rsync -a through the mount
git                 tests: git add/commit/fsck through the mount
tar                 tests: tarball extraction through the mount
diffutils           tests: diff -r of trees
dbench              benchmarks: mount.sh
fio                 benchmarks: mount.sh random writes
bindfs              benchmarks: mount.sh's FUSE floor (a pass-through FUSE mount)
bc                  benchmarks: ratios
coreutils           everything
"

names=$(printf '%s\n' "$PACKAGES" | awk 'NF { print $1 }')

missing=""
for p in $names; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing="$missing $p"
  fi
done

mode=${1:-install}
case "$mode" in
  --check)
    if [ -n "$missing" ]; then
      echo "missing Debian packages:$missing"
      exit 1
    fi
    exit 0
    ;;
  --ensure|install) ;;
  *) echo "usage: $0 [--check|--ensure]" >&2; exit 2 ;;
esac

[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "cext3 needs these Debian packages:$missing" >&2
  echo "run as root: apt-get update && apt-get install -y$missing" >&2
  exit 1
fi

echo "installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing
