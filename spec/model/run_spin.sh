#!/usr/bin/env bash
# Model-check the shmbridge SPIN models.  Builds pan in a temporary directory (never in the tree).
#
#   run_spin.sh protocol   safety (crashes, timeouts, restarts) + liveness (weak fairness, no crash)
#                          of shmbridge.pml (PROTOCOL.md v1); exit 0 iff no errors
#   run_spin.sh draft      shmbridge.pml with -DDRAFT_REPLY_CODE (the first draft of v1, before
#                          R-STATE-3 made reply_code responder-only) and with -DDRAFT_CLOSE_ORDER
#                          (1.0's close: T3 before state = CLOSED); exit 0 iff SPIN finds the
#                          T7/R-REC-2 reply_code race and the close read as a death (README.md)
#   run_spin.sh naive      naive.pml (original 0/1/0/2 word + timeout/retry); exit 0 iff SPIN FINDS
#                          the wrong-reply violation (trail printed), 1 if it unexpectedly passes
#   run_spin.sh rogue      shmbridge.pml -DROGUE -DMAXC=1: one plain store of an out-of-table phase;
#                          honest actors report PROTOCOL_VIOLATION (R-STATE-8/11); exit 0 iff no errors
#   run_spin.sh reclaim    reclaim.pml as the spec is written (R-LIVE-1, R-STALE-3: start_time = 0
#                          before the pid CAS); exit 0 iff no errors
#   run_spin.sh reclaim-draft  reclaim.pml -DDRAFT_RECLAIM (the first draft of R-STALE-3) and
#                          -DDRAFT_RECLAIM -DFIX_INODE; exit 0 iff SPIN FINDS the two-reclaimer
#                          race in both (a reclaimer unlinks the other's fresh segment)
#   run_spin.sh all        all of them; exit 0 iff every one behaves as expected
#
# Exit 77 if spin (or a C compiler) is missing.  Extra pan/cc options: PAN_OPTS, CC (default cc).
set -u
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CC="${CC:-cc}"
MODE="${1:-all}"

command -v spin >/dev/null 2>&1 || { echo "run_spin.sh: spin not found (apt-get install spin)" >&2; exit 77; }
command -v "$CC" >/dev/null 2>&1 || { echo "run_spin.sh: C compiler '$CC' not found" >&2; exit 77; }

WORK="$(mktemp -d "${TMPDIR:-/tmp}/shmbridge-spin.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT

# build <model> <spin -D flags> <cc -D flags>  -> $WORK/<tag>/pan
build() {
    local model="$1" sflags="$2" cflags="$3" dir
    dir="$WORK/$(echo "$model $sflags $cflags" | tr -c 'A-Za-z0-9\n' '_')"
    mkdir -p "$dir" && cp "$HERE/$model" "$dir/" || return 2
    ( cd "$dir" && spin $sflags -a "$model" >spin.log 2>&1 && "$CC" -O2 $cflags -o pan pan.c >cc.log 2>&1 ) \
        || { echo "build failed for $model ($sflags / $cflags):" >&2; cat "$dir"/spin.log "$dir"/cc.log 2>/dev/null >&2; return 2; }
    echo "$dir"
}

summary() {  # one line from pan output
    local out="$1" states depth t
    states=$(grep -Eo '^ *[0-9.e+]+ states, stored' <<<"$out" | head -1 | awk '{print $1}')
    depth=$(grep -Eo 'depth reached [0-9]+' <<<"$out" | awk '{print $3}')
    t=$(grep -Eo 'elapsed time [0-9.e+-]+' <<<"$out" | awk '{print $3}')
    echo "states=${states:-?} depth=${depth:-?} time=${t:-?}s"
}

errors_of() { grep -Eo 'errors: [0-9]+' <<<"$1" | awk '{print $2}' | tail -1; }

# run_pass <label> <model> <spin flags> <cc flags> <pan flags>: expects errors: 0
run_pass() {
    local label="$1" dir out rc
    dir=$(build "$2" "$3" "$4") || return 2
    out=$(cd "$dir" && ./pan $5 ${PAN_OPTS:-} 2>&1); rc=$?
    local e; e=$(errors_of "$out")
    if [[ "$e" == "0" ]] && ! grep -q 'Search not completed' <<<"$out" ; then
        echo "PASS  $label: no errors; $(summary "$out")"
        return 0
    fi
    echo "FAIL  $label: errors=${e:-?} (pan rc $rc); $(summary "$out")"
    grep -E 'pan:|assert|acceptance|invalid end' <<<"$out" | head -5
    if ls "$dir"/*.trail >/dev/null 2>&1; then
        echo "---- counterexample (spin -t -p, shortened) ----"
        (cd "$dir" && spin $3 -t -p "$2" 2>&1 | grep -E 'proc|assert|Error|cycle' | tail -40)
    fi
    return 1
}

# run_expect_violation <label> <model> <spin flags> <cc flags> <pan flags>: expects a violation
run_expect_violation() {
    local label="$1" dir out
    dir=$(build "$2" "$3" "$4") || return 2
    out=$(cd "$dir" && ./pan $5 ${PAN_OPTS:-} 2>&1)
    local e; e=$(errors_of "$out")
    if [[ -n "$e" && "$e" != "0" ]] && ls "$dir"/*.trail >/dev/null 2>&1; then
        local first; first=$(grep -m1 -E '^pan:1:' <<<"$out")
        echo "PASS  $label: violation found as expected: ${first#pan:1: }; $(summary "$out")"
        echo "---- counterexample (spin -t -p, shortened to process steps) ----"
        (cd "$dir" && spin $3 -t -p "$2" 2>&1 | grep -E '^ *[0-9]+:.*proc|Error|text of failed' \
            | sed -E 's/ *\(state [0-9]+\)//' | tail -40)
        return 0
    fi
    echo "FAIL  $label: expected a violation, but SPIN found none; $(summary "$out")"
    return 1
}

protocol() {
    local rc=0
    # R-STATE-1/2/3/6/8, R-TIME-2, R-STATE-10, R-LIVE-3, R-REC-1/2: assertions + no deadlock
    run_pass "protocol safety (MAXR=3, MAXC=2, timeouts, crashes)" shmbridge.pml \
        "" "-DSAFETY" "-m1000000" || rc=1
    # liveness, weak fairness, no crash, no requester timeout (responder timeouts, R-TIME-1/3),
    # no clean close: every request is answered
    run_pass "protocol liveness answered_all (-a -f, no crash, no requester timeout, no close)" shmbridge.pml \
        "-DLIVE -DNOCRASH -DNOTIMEOUT -DMAXCL=0" "" "-a -f -m1000000" || rc=1
    # R-CLOSE-1/2, R-LIVE-4: nobody waits forever after the peer closed
    run_pass "protocol liveness close_live (-a -f, no crash, clean close)" shmbridge.pml \
        "-DLIVE -DNOCRASH -DCLOSELIVE" "" "-a -f -m1000000" || rc=1
    # liveness, weak fairness, no crash, timeouts: no request stays outstanding forever
    run_pass "protocol liveness no_stuck_request (-a -f, no crash, timeouts)" shmbridge.pml \
        "-DLIVE -DNOCRASH" "" "-a -f -m1000000" || rc=1
    return $rc
}

draft() {
    local rc=0
    run_expect_violation "first draft (DRAFT_REPLY_CODE): T7 vs R-REC-2 reply_code race" \
        shmbridge.pml "-DDRAFT_REPLY_CODE" "-DSAFETY" "-m1000000" || rc=1
    # PROTOCOL.md 1.0's close (R-CLOSE-1/2): T3 with PEER_GONE before state = CLOSED
    run_expect_violation "1.0 close order (DRAFT_CLOSE_ORDER): a clean close read as a death (R-LIVE-5)" \
        shmbridge.pml "-DDRAFT_CLOSE_ORDER" "-DSAFETY" "-m1000000" || rc=1
    return $rc
}

naive() {
    # -E: report assertion violations only (the naive word also deadlocks; not the point here)
    run_expect_violation "naive 0/1/0/2 word with timeout/retry (R-STATE-6 wrong reply)" \
        naive.pml "" "-DSAFETY" "-E -m100000"
}

rogue() {
    # R-STATE-8/11: a rogue plain store; MAXC=1 keeps the state space small
    run_pass "rogue writer (ROGUE, MAXR=3, MAXC=1): honest actors report PROTOCOL_VIOLATION" \
        shmbridge.pml "-DROGUE -DMAXC=1" "-DSAFETY" "-m1000000"
}

reclaim() {
    run_pass "reclaim as specified (R-LIVE-1, R-STALE-3: start_time = 0 before the pid CAS)" \
        reclaim.pml "" "-DSAFETY" "-m100000"
}

reclaim_draft() {
    local rc=0
    run_expect_violation "reclaim, first draft (DRAFT_RECLAIM): a reclaimer unlinks the other's fresh segment" \
        reclaim.pml "-DDRAFT_RECLAIM" "-DSAFETY" "-m100000" || rc=1
    run_expect_violation "reclaim, first draft with an inode check before unlink (DRAFT_RECLAIM, FIX_INODE): still racy" \
        reclaim.pml "-DDRAFT_RECLAIM -DFIX_INODE" "-DSAFETY" "-m100000" || rc=1
    return $rc
}

case "$MODE" in
    protocol) protocol ;;
    draft) draft ;;
    naive) naive ;;
    rogue) rogue ;;
    reclaim) reclaim ;;
    reclaim-draft) reclaim_draft ;;
    all) r=0; protocol || r=1; draft || r=1; naive || r=1; rogue || r=1; reclaim || r=1; reclaim_draft || r=1; exit $r ;;
    *) echo "usage: $0 protocol|draft|naive|rogue|reclaim|reclaim-draft|all" >&2; exit 2 ;;
esac
