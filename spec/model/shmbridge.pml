/*
 * shmbridge protocol v1 -- SPIN model (spec/PROTOCOL.md §4, §5, §7).
 *
 * What is modelled
 *   - the control word: phase (IDLE 0, REQUESTED 1, REPLIED 2, TAKEN 4) + seq, changed only by
 *     compare-and-swap from the exact expected (phase, seq) (R-STATE-1, R-STATE-2); seq wraps
 *     modulo SEQMOD (abstracts the 28-bit wrap; the run starts at SEQ0 so that it wraps);
 *   - the payload (kind REQ/REP + request id), the reply_code field, and who touches them;
 *   - one requester: send (T1, with the R-STATE-9 order check-word / write / CAS), receive (T4)
 *     with a nondeterministic timeout (T5 cancel, or keep the request when TAKEN: late reply,
 *     R-STATE-10), PEER_GONE while waiting (T5 / T7, R-LIVE-3);
 *   - one responder: take (T2), compute in place, reply (T3);
 *   - crash + restart of either side at any step (Promela `unless`), bounded by MAXC; a restarted
 *     requester recovers per R-REC-1 (T5 / T6 / wait-or-T7, attach timeout), a restarted
 *     responder per R-REC-2 (T8 with reply_code = PEER_GONE);
 *   - the liveness slot is abstracted to a flag `*_alive` (slot ATTACHED with a live process).
 * What is abstracted away: memory ordering (each CAS is one atomic step; R-STATE-4 is assumed),
 *   the futex/event wake-ups (a waiting process is simply blocked until its guard holds),
 *   clean close (a crash is the harder case), liveness-check latency, payload contents beyond
 *   (kind, id), dtype/shape validation.
 *
 * Safety (run with -DSAFETY):  assertions below, each citing the requirement it checks, plus no
 *   invalid end state (no deadlock).  Liveness (spin -DLIVE -DNOCRASH [-DNOTIMEOUT], pan -a -f):
 *   the ltl properties at the end.
 *
 * Build switches:  MAXR (requests, default 3), MAXC (crashes, default 2), NOCRASH, NOTIMEOUT,
 *   LIVE, DRAFT_REPLY_CODE.  DRAFT_REPLY_CODE restores the first draft of PROTOCOL.md v1, in which
 *   send (R-STATE-9) reset reply_code and R-REC-2 wrote it while TAKEN; SPIN finds a reply_code
 *   ownership race between T7 (reclaim) and R-REC-2 (recover) there.  The published spec (R-STATE-3)
 *   makes reply_code responder-only: every T3 writes it (0 on success), T8 writes PEER_GONE, send
 *   does not touch it.  See README.md.
 */

#ifndef MAXR
#define MAXR 3
#endif
#ifndef MAXC
#define MAXC 2
#endif
#define SEQMOD 4
#define SEQ0   2

#define IDLE      0
#define REQUESTED 1
#define REPLIED   2
#define TAKEN     4

#define REQ 1           /* payload kind: a request written by the requester */
#define REP 2           /* payload kind: a reply computed by the responder  */
#define OK  0
#define PG  7           /* reply_code PEER_GONE */

byte phase = IDLE;      /* the control word (phase, seq): one atomic 32-bit word */
byte seq = SEQ0;

byte pay_kind;          /* payload */
byte pay_id;
byte reply_code;

bit req_in;             /* ghost ownership: the process is reading/writing payload/reply_code */
bit rsp_in;

bit req_alive = 1;      /* liveness slots, abstracted (R-LIVE-1/2) */
bit rsp_alive = 1;

bit crash_req;          /* crash injection */
bit crash_rsp;
byte crashes;

byte next_rid = 1;      /* ghost: request ids, never reused */
byte sent;              /* requests published (T1) */
byte answered;          /* replies accepted (T4 in receive) */
bit by_t8;              /* ghost: the current REPLIED was published by T8 (recover) */
bit g_pending;          /* ghost copy of the requester's "request outstanding" */
bit req_done;

#define NEXT(s) (((s) + 1) % SEQMOD)

/* R-STATE-2: every change of the word is a CAS from the exact expected (phase, seq) */
inline cas(ep, es, np, ns, ok) {
    atomic {
        if
        :: phase == ep && seq == es -> phase = np; seq = ns; ok = 1
        :: else -> ok = 0
        fi
    }
}

/* R-STATE-3: the payload is never owned by both roles at once */
#define REQ_ENTER  atomic { req_in = 1; assert(!rsp_in) }   /* R-STATE-3 */
#define REQ_LEAVE  req_in = 0
#define RSP_ENTER  atomic { rsp_in = 1; assert(!req_in) }   /* R-STATE-3 */
#define RSP_LEAVE  rsp_in = 0

/* R-STATE-1: the word never holds a phase outside the table */
active proctype word_monitor() {
end:
    atomic { !(phase == IDLE || phase == REQUESTED || phase == REPLIED || phase == TAKEN)
             -> assert(false) }                            /* R-STATE-1, R-STATE-8 */
}

active proctype crasher() {
#ifndef NOCRASH
end:
    do
    :: atomic { crashes < MAXC && req_alive && !req_done && !crash_req -> crash_req = 1; crashes++ }
    :: atomic { crashes < MAXC && rsp_alive && !crash_rsp -> crash_rsp = 1; crashes++ }
    od
#else
    skip
#endif
}

active proctype requester() {
    byte last = SEQ0;   /* seq of the IDLE word it owns (R-STATE-8) */
    byte own;           /* seq of its outstanding request */
    byte rid;           /* id of its outstanding request (ghost tag in the payload) */
    bit pending, timed_out, restarted, ok;
    byte p, s;

again:
    {
        if
        :: restarted ->
            /* R-REC-1: bring the channel back to IDLE before the first send */
            req_alive = 1;
attach:     atomic { p = phase; s = seq };
            if
            :: p == IDLE -> last = s
            :: p == REQUESTED -> cas(REQUESTED, s, IDLE, s, ok); if :: ok -> last = s :: else -> goto attach fi  /* T5, orphan counts as own */
            :: p == REPLIED -> cas(REPLIED, s, IDLE, s, ok); if :: ok -> last = s :: else -> goto attach fi      /* T6 */
            :: p == TAKEN ->
                if
                :: !rsp_alive ->                                   /* T7 (R-LIVE-3) */
                    cas(TAKEN, s, IDLE, s, ok);                    /* slot check and CAS are two steps */
                    if :: ok -> last = s :: else -> goto attach fi
                :: atomic { phase == REPLIED && seq == s } -> goto attach   /* the late reply came: discard it */
                :: true -> req_alive = 0; goto attach                      /* attach deadline: TIMEOUT, release the slot, try again */
                fi
            fi;
            restarted = 0
        :: else -> skip
        fi;

        do
        :: !pending && sent < MAXR ->                              /* send: T1 */
            atomic { p = phase; s = seq };
            assert(p == IDLE && s == last);                        /* R-STATE-8: only the requester leaves IDLE */
            REQ_ENTER;                                             /* R-STATE-9: write payload, message, reply_code = 0 */
            rid = next_rid;
            pay_kind = REQ;
            pay_id = rid;
#ifdef DRAFT_REPLY_CODE
            reply_code = OK;                                       /* R-STATE-9 as written */
#endif
            REQ_LEAVE;
            cas(IDLE, last, REQUESTED, NEXT(last), ok);
            assert(ok);                                            /* R-STATE-2: nobody else moves an IDLE word */
            atomic { next_rid++; own = NEXT(last); last = own; pending = 1; g_pending = 1; timed_out = 0; sent++ }
        :: pending && timed_out ->                                 /* send after a timeout: R-STATE-10 */
            if
            :: atomic { phase == REPLIED && seq == own -> phase = IDLE } ->   /* T4, result dropped */
                atomic { pending = 0; g_pending = 0; timed_out = 0; last = own }
            :: else -> skip                                        /* TAKEN: OUT_OF_TURN (R-STATE-7) */
            fi
        :: pending ->                                              /* receive */
            do
            :: atomic { phase == REPLIED && seq == own -> phase = IDLE } ->   /* T4 */
                REQ_ENTER;
                /* R-STATE-6: an accepted reply was computed from this request;
                   R-MSG-2 / R-REC-2: PEER_GONE only when a restarted responder completed it (T8) */
                assert((reply_code == OK && !by_t8 && pay_kind == REP && pay_id == rid)
                       || (reply_code == PG && by_t8));
                REQ_LEAVE;
                atomic { pending = 0; g_pending = 0; timed_out = 0; last = own; answered++ };
                break
            :: atomic { (phase == REQUESTED || phase == TAKEN) && seq == own && !rsp_alive -> p = phase } ->
                /* R-LIVE-3: peer gone while waiting: withdraw (T5) or reclaim (T7), then PEER_GONE */
                cas(p, own, IDLE, own, ok);
                if
                :: ok -> atomic { pending = 0; g_pending = 0; timed_out = 0; last = own }; break
                :: else -> skip                                    /* the word moved: re-evaluate */
                fi
#ifndef NOTIMEOUT
            :: atomic { (phase == REQUESTED || phase == TAKEN) && seq == own } ->
                /* R-TIME-2: deadline passed */
                cas(REQUESTED, own, IDLE, own, ok);                /* T5 */
                if
                :: ok -> atomic { pending = 0; g_pending = 0; timed_out = 0; last = own }
                :: else -> timed_out = 1                           /* TAKEN: keep it (late reply) */
                fi;
                break
#endif
            :: atomic { !((phase == REQUESTED || phase == TAKEN || phase == REPLIED) && seq == own) }
                -> assert(false)                                   /* R-STATE-8: unreachable without a rogue writer */
            od
        :: !pending && sent == MAXR -> break
        od;
        req_done = 1
    } unless {
        atomic { crash_req -> crash_req = 0; req_alive = 0; req_in = 0;
                 pending = 0; g_pending = 0; timed_out = 0; restarted = 1 }
    };
    if
    :: restarted -> goto again
    :: else -> skip
    fi
}

active proctype responder() {
    byte held;          /* seq of the request it holds */
    byte id;
    bit holding, restarted, ok;
    byte p, s;

again:
    {
        if
        :: restarted ->
            rsp_alive = 1;
            /* R-REC-2: complete a round left TAKEN by the dead predecessor with PEER_GONE (T8) */
            atomic { p = phase; s = seq };
            if
            :: p == TAKEN ->
#ifndef DRAFT_REPLY_CODE
                reply_code = PG;                                   /* responder-only field: no payload access */
#else
                RSP_ENTER;                                         /* R-REC-2 as written: writes reply_code in TAKEN */
                reply_code = PG;
                RSP_LEAVE;
#endif
                atomic { cas(TAKEN, s, REPLIED, s, ok); if :: ok -> by_t8 = 1 :: else -> skip fi }  /* T8; may fail: T7 won */
            :: else -> skip
            fi;
            restarted = 0
        :: else -> skip
        fi;
end:
        do
        :: atomic { phase == REQUESTED -> phase = TAKEN; held = seq; holding = 1 } ->   /* T2 */
            RSP_ENTER;
            assert(pay_kind == REQ);                               /* R-STATE-3: a published request */
            id = pay_id;
            pay_kind = REP;                                        /* compute the reply in place */
            pay_id = id;
            reply_code = OK;
            RSP_LEAVE;
            atomic { cas(TAKEN, held, REPLIED, held, ok); by_t8 = 0 }   /* T3 (writes reply_code = 0 above) */
            assert(ok);                                            /* R-STATE-3: nobody takes a held request away */
            holding = 0
        :: atomic { phase == TAKEN && !holding } -> assert(false)  /* R-STATE-8: unreachable */
        od
    } unless {
        atomic { crash_rsp -> crash_rsp = 0; rsp_alive = 0; rsp_in = 0; holding = 0; restarted = 1 }
    };
    goto again
}

#ifdef LIVE
#ifdef NOTIMEOUT
/* no crash, no timeout: every request is answered (R-STATE-*, R-WAIT-*) */
ltl answered_all { <> (answered == MAXR) }
#else
/* no crash, timeouts: no request stays outstanding forever (R-TIME-2, R-STATE-10) */
ltl no_stuck_request { [] (g_pending -> <> !g_pending) }
#endif
#endif
