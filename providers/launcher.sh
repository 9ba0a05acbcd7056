#!/bin/sh
# runctl launcher: the one run protocol, byte for byte the same on every host (local, SSH, SSM).
#
#   launcher.sh start RUN_DIR WORKDIR CKPT_DIR META_JSON CMD [ARG...]
#       creates RUN_DIR with command, meta.json, output.log; starts a detached supervisor and
#       prints the run's process-group id once the training process exists.
#   launcher.sh status RUN_DIR      prints: running PGID | starting | exited CODE | lost | missing
#   launcher.sh list RUNS_ROOT      prints one "RUN_ID STATUS..." line per run directory
#   launcher.sh signal RUN_DIR SIG  sends SIG to the run's process group if it still runs
#
# The supervisor lives in its own session and starts the training in a session (and process
# group) of its own, so a signal to the training's group reaches everything the training
# spawned but never the supervisor: even after SIGKILL it lives to write exit_code.
# Arguments reach the training as an argv list ("$@"), never through shell interpolation.
set -u

die() {
    printf 'runctl launcher: %s\n' "$*" >&2
    exit 2
}

quote() {
    printf "'%s'" "$(printf '%s' "$1" | sed "s/'/'\\\\''/g")"
}

write_atomic() { # FILE VALUE
    printf '%s\n' "$2" >"$1.tmp" && mv -f "$1.tmp" "$1"
}

start_time_of() { # PID -> the kernel's start time of PID (Linux), empty elsewhere
    if [ -r "/proc/$1/stat" ]; then
        sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -d' ' -f20
    fi
}

is_ours() { # PID START_FILE: PID is alive and is the process we recorded (pids get reused)
    kill -0 "$1" 2>/dev/null || return 1
    [ -s "$2" ] || return 0
    now=$(start_time_of "$1")
    [ -z "$now" ] || [ "$now" = "$(cat "$2")" ]
}

group_alive() { # PGID
    kill -s 0 -- "-$1" 2>/dev/null
}

cmd_start() {
    [ $# -ge 5 ] || die "usage: start RUN_DIR WORKDIR CKPT_DIR META_JSON CMD [ARG...]"
    run_dir=$1 workdir=$2 ckpt_dir=$3 meta=$4
    shift 4
    [ -d "$workdir" ] || die "project directory $workdir does not exist (sync the project first)"
    command -v setsid >/dev/null 2>&1 || die "setsid is not installed on this host (util-linux)"
    [ ! -e "$run_dir/pid" ] || die "run directory $run_dir is already in use"
    mkdir -p "$run_dir" "$ckpt_dir" || die "cannot create $run_dir"
    for word in "$@"; do
        quote "$word"
        printf ' '
    done >"$run_dir/command.tmp" && echo >>"$run_dir/command.tmp" && mv -f "$run_dir/command.tmp" "$run_dir/command"
    write_atomic "$run_dir/meta.json" "$meta"
    : >>"$run_dir/output.log"
    setsid sh "$0" supervise "$run_dir" "$workdir" "$ckpt_dir" "$@" \
        </dev/null >>"$run_dir/launcher.log" 2>&1 &
    tries=0
    while [ ! -s "$run_dir/pid" ]; do
        tries=$((tries + 1))
        [ "$tries" -le 200 ] || die "the run did not start; see $run_dir/launcher.log"
        sleep 0.05
    done
    cat "$run_dir/pid"
}

cmd_supervise() {
    run_dir=$1 workdir=$2 ckpt_dir=$3
    shift 3
    # Shield the supervisor: a stray TERM/INT/HUP interrupts `wait` but never ends us.
    trap ':' TERM INT HUP
    write_atomic "$run_dir/launcher_pid" "$$"
    write_atomic "$run_dir/launcher_start" "$(start_time_of $$)"
    RUNCTL_RUN_DIR=$run_dir
    RUNCTL_RUN_ID=$(basename "$run_dir")
    RUNCTL_CHECKPOINT_DIR=$ckpt_dir
    RUNCTL_PROJECT_ROOT=$workdir
    PYTHONUNBUFFERED=1
    export RUNCTL_RUN_DIR RUNCTL_RUN_ID RUNCTL_CHECKPOINT_DIR RUNCTL_PROJECT_ROOT PYTHONUNBUFFERED
    if ! cd "$workdir"; then
        echo "runctl: cannot enter $workdir" >>"$run_dir/output.log"
        write_atomic "$run_dir/exit_code" 127
        exit 0
    fi
    setsid "$@" </dev/null >>"$run_dir/output.log" 2>&1 &
    child=$!
    write_atomic "$run_dir/pid_start" "$(start_time_of "$child")"
    write_atomic "$run_dir/pid" "$child"
    while :; do
        wait "$child"
        code=$?
        # A trapped signal interrupts wait early; the child (or its zombie) is still there.
        kill -0 "$child" 2>/dev/null || break
    done
    write_atomic "$run_dir/exit_code" "$code"
}

cmd_status() {
    run_dir=$1
    if [ ! -d "$run_dir" ]; then
        echo missing
    elif [ -s "$run_dir/exit_code" ]; then
        echo "exited $(cat "$run_dir/exit_code")"
    elif [ -s "$run_dir/pid" ] && { group_alive "$(cat "$run_dir/pid")" || is_ours "$(cat "$run_dir/launcher_pid" 2>/dev/null)" "$run_dir/launcher_start"; }; then
        pgid=$(cat "$run_dir/pid")
        if kill -0 "$pgid" 2>/dev/null && ! is_ours "$pgid" "$run_dir/pid_start"; then
            echo lost # the pid was reused by something that is not our training
        else
            echo "running $pgid"
        fi
    elif [ ! -s "$run_dir/pid" ] && is_ours "$(cat "$run_dir/launcher_pid" 2>/dev/null)" "$run_dir/launcher_start"; then
        echo starting
    else
        echo lost
    fi
}

cmd_list() {
    [ -d "$1" ] || return 0
    for dir in "$1"/*/; do
        [ -d "$dir" ] || continue
        dir=${dir%/}
        printf '%s %s\n' "$(basename "$dir")" "$(cmd_status "$dir")"
    done
}

cmd_signal() {
    run_dir=$1 sig=$2
    state=$(cmd_status "$run_dir")
    case $state in
    running*)
        kill -s "$sig" -- "-${state#running }" 2>/dev/null && echo sent || echo "not running"
        ;;
    *) echo "not running" ;;
    esac
}

[ $# -ge 1 ] || die "usage: launcher.sh start|status|list|signal ..."
sub=$1
shift
case $sub in
start) cmd_start "$@" ;;
supervise) cmd_supervise "$@" ;;
status) [ $# -eq 1 ] || die "usage: status RUN_DIR"; cmd_status "$1" ;;
list) [ $# -eq 1 ] || die "usage: list RUNS_ROOT"; cmd_list "$1" ;;
signal) [ $# -eq 2 ] || die "usage: signal RUN_DIR SIG"; cmd_signal "$1" "$2" ;;
*) die "unknown subcommand $sub" ;;
esac
