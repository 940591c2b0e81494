# Shared by testbed/up, testbed/down and testbed/ctl (sourced, never run).
# The test bed: a private bridge with network namespaces as "hosts" (sshd + rootless podman,
# sshd + dockerd, a Slurm login node and two compute nodes). See testbed/README.md.
# shellcheck shell=bash

TB_BRIDGE=rstb0
TB_NET=10.231.0
TB_BRIDGE_ADDR=$TB_NET.1
TB_PREFIX=24
TB_HOSTS=(rstb-host rstb-docker rstb-login rstb-node1 rstb-node2)
declare -A TB_ADDR=(
    [rstb-host]=$TB_NET.10 [rstb-docker]=$TB_NET.11
    [rstb-login]=$TB_NET.20 [rstb-node1]=$TB_NET.21 [rstb-node2]=$TB_NET.22
)
TB_SSH_HOSTS=(rstb-host rstb-docker rstb-login)   # namespaces running an sshd on port 22
TB_NODES=(node1 node2)                            # Slurm nodes; node N lives in namespace rstb-N
TB_LOGIN=rstb-login
TB_ACCOUNTS=(rosetta alice bob)
TB_DOCKER_GROUP=rstb-docker
TB_DOCKER_USERS=(rosetta alice)                   # bob deliberately has no docker access
TB_IMAGE=localhost/testbed/busybox
TB_REGISTRY=$TB_BRIDGE_ADDR:5000                  # the platform's registry (not started here)
TB_PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
TB_OIDC_PORT=9380                                 # the OpenID Connect provider, on loopback only
TB_OIDC_ISSUER=http://127.0.0.1:$TB_OIDC_PORT
TB_OIDC_VERSION=8.8.1                             # npm's oidc-provider (runs on Node 18 and 20)
TB_FW_RULE=(FORWARD -i "$TB_BRIDGE" -o "$TB_BRIDGE" -m comment --comment rosetta-testbed -j ACCEPT)

tb_log() { printf 'testbed: %s\n' "$*" >&2; }
tb_die() { printf 'testbed: error: %s\n' "$*" >&2; exit 1; }

# Parses --dir (also ROSETTA_TESTBED_DIR), sets DIR and the derived paths; the remaining
# arguments are left in TB_ARGS.
tb_init() {
    DIR=${ROSETTA_TESTBED_DIR:-/var/lib/rosetta-testbed}
    TB_ARGS=()
    while [ $# -gt 0 ]; do
        case $1 in
            --dir) [ $# -ge 2 ] || tb_die "--dir needs a value"; DIR=$2; shift 2 ;;
            --dir=*) DIR=${1#--dir=}; shift ;;
            *) TB_ARGS+=("$1"); shift ;;
        esac
    done
    [ "$(id -u)" = 0 ] || tb_die "must run as root"
    export PATH=$TB_PATH:$PATH
    DIR=$(realpath -m "$DIR")
    SLURM_CONF_FILE=$DIR/slurm/slurm.conf
    MUNGE_SOCKET=$DIR/munge/run/munge.socket.2
    DOCKER_SOCK=$DIR/docker/docker.sock
    DOCKER_HOST_URL=unix://$DOCKER_SOCK
    KEY=$DIR/keys/id_ed25519
}

# The bridge and namespaces are machine-wide: the bridge's alias names the DIR that owns them.
tb_owner() { cat "/sys/class/net/$TB_BRIDGE/ifalias" 2>/dev/null || true; }
tb_check_owner() {
    local owner
    owner=$(tb_owner)
    [ -z "$owner" ] || [ "$owner" = "$DIR" ] \
        || tb_die "a test bed from $owner is running; stop it first: testbed/down --dir $owner"
}

# One writer at a time (up, down and ctl may be called by parallel tests).
tb_lock() {
    mkdir -p "$DIR"
    exec 9>"$DIR/.lock"
    flock -w 600 9 || tb_die "could not lock $DIR/.lock"
}

tb_home() { echo "$DIR/shared/home/$1"; }

# ---------------------------------------------------------------- services, by PID file

TB_SERVICES=(munged sshd-rstb-host sshd-rstb-docker sshd-rstb-login slurmctld slurmd-node1 slurmd-node2 dockerd oidc)

# tb_svc SERVICE: sets TB_PIDFILE, TB_EXE (program) and TB_NS (its namespace, "" = the host's).
tb_svc() {
    case $1 in
        munged) TB_PIDFILE=$DIR/munge/munged.pid TB_EXE=munged TB_NS="" ;;
        sshd-rstb-*) TB_PIDFILE=$DIR/run/$1.pid TB_EXE=sshd TB_NS=${1#sshd-} ;;
        slurmctld) TB_PIDFILE=$DIR/run/slurmctld.pid TB_EXE=slurmctld TB_NS=$TB_LOGIN ;;
        slurmd-node*) TB_PIDFILE=$DIR/run/$1.pid TB_EXE=slurmd TB_NS=rstb-${1#slurmd-} ;;
        dockerd) TB_PIDFILE=$DIR/run/dockerd.pid TB_EXE=dockerd TB_NS=rstb-docker ;;
        oidc) TB_PIDFILE=$DIR/run/oidc.pid TB_EXE=node TB_NS="" ;;
        *) tb_die "unknown service $1" ;;
    esac
}
tb_pidfile() { tb_svc "$1"; echo "$TB_PIDFILE"; }
tb_netns_of() { tb_svc "$1"; echo "$TB_NS"; }

# Prints the PID of a running service and succeeds, or fails. A PID counts only if the
# process runs the expected program inside the expected namespace (PIDs get reused).
# No forks on the common path: `up` calls this for every service on every run.
tb_pid() {
    local pid exe
    tb_svc "$1"
    [ -s "$TB_PIDFILE" ] || return 1
    # (not $(<file): under errexit a vanished file would end the whole script)
    pid=""
    { read -r pid <"$TB_PIDFILE" || [ -n "$pid" ]; } 2>/dev/null || return 1   # dockerd: no final newline
    [[ $pid =~ ^[0-9]+$ ]] && [ -e "/proc/$pid/exe" ] || return 1   # (a zombie has no exe)
    if ! [ "/proc/$pid/exe" -ef "/usr/sbin/$TB_EXE" ]; then
        # Debian's slurmd is slurmd-wlm (its node, nodejs); a binary replaced by an upgrade shows as "(deleted)".
        exe=$(readlink "/proc/$pid/exe" 2>/dev/null) || return 1
        exe=${exe##*/}; exe=${exe% (deleted)}; exe=${exe%-wlm}
        [ "${exe/#nodejs/node}" = "$TB_EXE" ] || return 1
    fi
    [ -z "$TB_NS" ] || [ "/proc/$pid/ns/net" -ef "/run/netns/$TB_NS" ] || return 1
    echo "$pid"
}

# Waits until a service's PID file names a live process (the daemons write it when ready).
tb_wait_pid() {
    local i
    for ((i = 0; i < ${2:-100}; i++)); do
        tb_pid "$1" >/dev/null && return 0
        sleep 0.05
    done
    return 1
}

# A process has ended once it is gone or a zombie (PID 1 on this machine kind reaps orphans
# only every second or two).
tb_running() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [ "${stat%% *}" != Z ]
}

# Stops services: SIGTERM to all at once, SIGKILL to those left after $TB_STOP_WAIT seconds.
tb_stop() {
    local svc pid pids=() i alive
    for svc in "$@"; do
        if pid=$(tb_pid "$svc"); then
            kill -TERM "$pid" 2>/dev/null || true
            pids+=("$pid")
        fi
        rm -f "$(tb_pidfile "$svc")"
    done
    [ ${#pids[@]} -gt 0 ] || return 0
    for ((i = 0; i < ${TB_STOP_WAIT:-5} * 20; i++)); do
        alive=0
        for pid in "${pids[@]}"; do tb_running "$pid" && alive=1; done
        [ $alive = 1 ] || return 0
        sleep 0.05
    done
    for pid in "${pids[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
}

tb_kill() {   # abrupt: a crash, for fault tests
    local pid
    if pid=$(tb_pid "$1"); then kill -KILL "$pid"; fi
    rm -f "$(tb_pidfile "$1")"
}

# dockerd bind-mounts its namespace under exec-root (netns/default) and leaves it mounted
# when it stops; that mount would keep the rstb-docker namespace alive after `down`.
tb_docker_umount() {
    local m
    { findmnt -rn -o TARGET | grep "^$DIR/docker/" || true; } | sort -r | while read -r m; do
        umount "$m" 2>/dev/null || umount -l "$m" 2>/dev/null || true
    done
}

tb_in_ns() {   # run a command in a namespace's network, with a clean environment
    local ns=$1; shift
    if [ -n "$ns" ]; then
        nsenter --net="/run/netns/$ns" env -i PATH="$TB_PATH" LANG=C.UTF-8 "$@"
    else
        env -i PATH="$TB_PATH" LANG=C.UTF-8 "$@"
    fi
}

tb_start() {
    local svc=$1 ns
    tb_pid "$svc" >/dev/null && return 0
    ns=$(tb_netns_of "$svc")
    [ -z "$ns" ] || [ -e "/run/netns/$ns" ] || tb_die "namespace $ns is missing: run testbed/up"
    rm -f "$(tb_pidfile "$svc")"
    case $svc in
        munged)
            [ -f "$DIR/munge/munge.key" ] || tb_die "no munge key: run testbed/up"
            runuser -u munge -- env -i PATH="$TB_PATH" /usr/sbin/munged \
                --socket="$MUNGE_SOCKET" --key-file="$DIR/munge/munge.key" \
                --pid-file="$DIR/munge/munged.pid" --log-file="$DIR/munge/munged.log" \
                --seed-file="$DIR/munge/munged.seed"
            ;;
        sshd-*)
            local conf=$DIR/ssh/$ns/sshd_config
            [ -f "$conf" ] || tb_die "no $conf: run testbed/up"
            mkdir -p /run/sshd && chmod 755 /run/sshd
            tb_in_ns "$ns" /usr/sbin/sshd -f "$conf" -E "$DIR/log/sshd-$ns.log"
            ;;
        slurmctld)
            [ -f "$SLURM_CONF_FILE" ] || tb_die "no $SLURM_CONF_FILE: run testbed/up"
            tb_in_ns "$ns" SLURM_CONF="$SLURM_CONF_FILE" /usr/sbin/slurmctld -f "$SLURM_CONF_FILE"
            ;;
        slurmd-*)
            [ -f "$SLURM_CONF_FILE" ] || tb_die "no $SLURM_CONF_FILE: run testbed/up"
            tb_in_ns "$ns" SLURM_CONF="$SLURM_CONF_FILE" /usr/sbin/slurmd -f "$SLURM_CONF_FILE" -N "${svc#slurmd-}"
            ;;
        dockerd)
            [ -f "$DIR/docker/daemon.json" ] || tb_die "no docker config: run testbed/up"
            rm -f "$DOCKER_SOCK"
            tb_docker_umount
            nsenter --net="/run/netns/$ns" setsid -f env -i PATH="$TB_PATH" LANG=C.UTF-8 \
                /usr/sbin/dockerd --config-file "$DIR/docker/daemon.json" \
                --data-root "$DIR/docker/data" --exec-root "$DIR/docker/exec" \
                --pidfile "$DIR/run/dockerd.pid" -H "$DOCKER_HOST_URL" -G "$TB_DOCKER_GROUP" \
                --iptables=false --ip-forward=false --ip-masq=false \
                --cgroup-parent /rstb-docker --shutdown-timeout 3 \
                >>"$DIR/log/dockerd.log" 2>&1 </dev/null
            ;;
        oidc)
            [ -f "$DIR/oidc/config.json" ] || tb_die "no OpenID Connect provider config: run testbed/up"
            (cd "$DIR/oidc" && setsid -f env -i PATH="$TB_PATH" LANG=C.UTF-8 \
                node provider.mjs "$DIR/oidc/config.json" >>"$DIR/log/oidc.log" 2>&1 </dev/null)
            ;;
    esac 9>&-   # daemons must not inherit the lock
    tb_wait_pid "$svc" 200 || tb_die "$svc did not start (see $DIR/log or $DIR/munge/munged.log)"
    if [ "$svc" = dockerd ]; then   # the PID file comes before the API answers
        local i
        for ((i = 0; i < 200; i++)); do
            tb_docker version --format '{{.Server.Version}}' >/dev/null 2>&1 && return 0
            sleep 0.05
        done
        tb_die "dockerd does not answer on $DOCKER_SOCK (see $DIR/log/dockerd.log)"
    fi
    return 0
}

# ---------------------------------------------------------------- namespaces

tb_netns_ok() {   # /run/netns/NAME exists and is a live namespace mount
    [ -e "/run/netns/$1" ] && [ "$(stat -f -c %T "/run/netns/$1" 2>/dev/null)" = nsfs ]
}

# PIDs of processes whose network namespace is NAME.
tb_pids_in_netns() {
    local inode
    tb_netns_ok "$1" || return 0
    inode=$(stat -L -c %i "/run/netns/$1")
    # (find fails on processes that end during the scan: not an error here)
    { find /proc/[0-9]*/ns/net -maxdepth 0 -lname "net:\[$inode\]" 2>/dev/null || true; } | cut -d/ -f3
}

as_user() {   # as_user USER CMD...: a clean login-like environment, as an SSH session has
    local u=$1 home; shift
    home=$(tb_home "$u")
    (cd / && runuser -u "$u" -- env -i HOME="$home" USER="$u" LOGNAME="$u" SHELL=/bin/bash \
        PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8 "$@" 9>&-)   # podman's pause process must not inherit the lock
}

tb_docker() { /usr/bin/docker -H "$DOCKER_HOST_URL" "$@"; }   # Debian's client, whatever else is on PATH

tb_slurm() { env SLURM_CONF="$SLURM_CONF_FILE" "$@"; }

# Waits (up to 10 s) until every node whose slurmd runs is in service: nodes a restarted
# slurmctld does not know yet are asked to register now (scontrol reconfigure), nodes left
# down or drained are resumed. Succeeds iff all nodes are in service.
tb_slurm_ready() {
    local i states n st asked=0 bad
    for ((i = 0; i < 200; i++)); do
        states=$(tb_slurm sinfo -h -N -o '%N %T' 2>/dev/null | sort -u) || states=""
        bad=""
        while read -r n st; do   # nodes whose slurmd runs but that are not in service
            [ -n "$n" ] && tb_pid "slurmd-$n" >/dev/null || continue
            [[ $st =~ ^(idle|mixed|allocated|completing)$ ]] || bad+="$n $st"$'\n'
        done <<<"$states"
        [ -n "$states" ] && [ -z "$bad" ] && return 0
        while read -r n st; do
            [ -n "$n" ] || continue
            case $st in
                drain* | down* | fail*) tb_slurm scontrol update NodeName="$n" State=RESUME 2>/dev/null || true ;;
                *'*' | unknown*) [ $asked = 1 ] || { asked=1; tb_slurm scontrol reconfigure 2>/dev/null || true; } ;;
            esac
        done <<<"$bad"
        sleep 0.05
    done
    return 1
}

# Account names may be given with or without the rstb- prefix.
tb_host_name() { case $1 in rstb-*) echo "$1" ;; *) echo "rstb-$1" ;; esac; }
tb_node_name() { echo "${1#rstb-}"; }
