#!/bin/sh
# Build tusk's runner images from Debian packages, with no registry.
#
#   deploy/images/build.sh [--force] [busybox|python|alpine ...]
#
# Images (each skipped when already present, unless --force):
#   tusk/busybox:latest  the host's static busybox alone (~2 MB, well under 1 s)
#   tusk/python:3.11     Debian bookworm python3 + busybox-static (~60 MB, a few s)
#   alpine:latest        tusk/busybox:latest under the name Pachyderm's examples and
#                        pachyderm-sdk's tests use (`image: alpine`, `cmd: ["sh"]`);
#                        like Alpine's, its userland is busybox
#
# Why not `docker build`: no registry is reachable here (no base image can be
# pulled) and BuildKit is absent, so images are root filesystems assembled on
# the host and fed to `docker import`.
set -eu

FORCE=0
WANT=""
for arg in "$@"; do
    case "$arg" in
        --force) FORCE=1 ;;
        busybox|python|alpine) WANT="$WANT $arg" ;;
        -h|--help) sed -n '2,15p' "$0"; exit 0 ;;
        *) echo "build.sh: unknown argument '$arg' (expected --force, busybox, python, alpine)" >&2; exit 2 ;;
    esac
done
[ -n "$WANT" ] || WANT="busybox python alpine"

PATH_ENV='ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'

if ! docker version >/dev/null 2>&1; then
    echo "build.sh: the Docker engine does not answer; start it with deploy/services.sh up" >&2
    exit 1
fi

# need CMD PACKAGE: install PACKAGE with apt-get when CMD (a path or command) is missing.
need() {
    if [ ! -e "$1" ] && ! command -v "$1" >/dev/null 2>&1; then
        echo "build.sh: installing $2" >&2
        apt-get install -y "$2" >/dev/null 2>&1 || {
            apt-get update >/dev/null && apt-get install -y "$2" >/dev/null
        }
    fi
}

elapsed() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }'; }

exists() { docker image inspect "$1" >/dev/null 2>&1; }

# import NAME MESSAGE DIR: load DIR as image NAME, dropping the image it replaces
# (a forced rebuild would otherwise leave an untagged copy behind each time).
import_dir() {
    old=$(docker image inspect --format '{{.Id}}' "$1" 2>/dev/null || true)
    tar -C "$3" -c . | docker import -c "$PATH_ENV" -m "$2" - "$1" >/dev/null
    if [ -n "$old" ] && [ "$old" != "$(docker image inspect --format '{{.Id}}' "$1")" ]; then
        docker image rm "$old" >/dev/null 2>&1 || true  # still used by a container: keep it
    fi
}

# skip NAME: true (and says so) when NAME is present and --force was not given.
skip() {
    if [ "$FORCE" = 0 ] && exists "$1"; then
        echo "build.sh: $1 already exists (use --force to rebuild)"
        return 0
    fi
    return 1
}

# Minimal account files: user code run with `user: nobody` or a numeric uid
# should find names, and tools such as `id` or Python's getpass expect them.
write_accounts() {
    mkdir -p "$1/etc" "$1/tmp" "$1/root"
    chmod 1777 "$1/tmp"
    printf 'root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$1/etc/passwd"
    printf 'root:x:0:\nnogroup:x:65534:\n' >"$1/etc/group"
}

build_busybox() {
    name=tusk/busybox:latest
    skip "$name" && return 0
    # The static build is needed: a dynamically linked busybox finds no libc in
    # the image. (busybox-static replaces the dynamic `busybox` package.)
    dpkg -s busybox-static >/dev/null 2>&1 || need /nonexistent busybox-static
    bb=/bin/busybox
    start=$(date +%s.%N)
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    mkdir -p "$dir/bin"
    cp "$bb" "$dir/bin/busybox"
    chroot "$dir" /bin/busybox --install -s /bin
    write_accounts "$dir"
    import_dir "$name" "tusk: static busybox" "$dir"
    rm -rf "$dir"
    trap - EXIT
    echo "build.sh: built $name in $(elapsed "$start") s"
}

build_python() {
    name=tusk/python:3.11
    skip "$name" && return 0
    need mmdebstrap mmdebstrap
    start=$(date +%s.%N)
    dir=$(mktemp -d)
    trap 'rm -rf "$dir"' EXIT
    # Reuse the machine's own apt sources (the only mirror known to answer here).
    # Their snapshot-style Release files may be past Valid-Until, hence the option.
    sources=/etc/apt/sources.list.d/debian.sources
    [ -f "$sources" ] || sources=/etc/apt/sources.list
    # --variant=extract unpacks the packages without running maintainer scripts:
    # no chroot execution, no apt or dpkg in the image; the standard library works.
    mmdebstrap --quiet --variant=extract --include=python3,busybox-static \
        --aptopt='Acquire::Check-Valid-Until "false"' \
        bookworm "$dir" "$sources" >/dev/null
    chroot "$dir" /bin/busybox --install -s
    write_accounts "$dir"
    # The extract variant leaves python3 without the unversioned link's target
    # when the alternatives system did not run; make sure `python` works too.
    [ -e "$dir/usr/bin/python3" ] || ln -s python3.11 "$dir/usr/bin/python3"
    [ -e "$dir/usr/bin/python" ] || ln -s python3 "$dir/usr/bin/python"
    import_dir "$name" "tusk: bookworm python3 + busybox" "$dir"
    rm -rf "$dir"
    trap - EXIT
    echo "build.sh: built $name in $(elapsed "$start") s"
}

build_alpine() {
    name=alpine:latest
    skip "$name" && return 0
    # Not Alpine Linux: no registry is reachable to pull it. What user code in
    # `image: alpine` examples needs is `sh` and the busybox tools, which this has.
    exists tusk/busybox:latest || build_busybox
    docker tag tusk/busybox:latest "$name"
    echo "build.sh: tagged tusk/busybox:latest as $name"
}

for image in $WANT; do
    "build_$image"
done
