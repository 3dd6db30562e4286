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
 *   - the liveness slot is abstracted to a flag `*_alive` (slot ATTACHED with a live process);
 *   - clean close (R-CLOSE-1/2, R-LIVE-4, MAXCL), responder take timeout (R-TIME-3), error exits
 *     (ERR_EXIT: R-ERR-3, R-TIME-1), and under -DROGUE one rogue plain store (R-STATE-8/11).
 * What is abstracted away: memory ordering (each CAS is one atomic step; R-STATE-4 is assumed),
 *   the futex/event wake-ups (a waiting process is simply blocked until its guard holds),
 *   liveness-check latency, payload contents beyond
 *   (kind, id), dtype/shape validation.
 *
 * Protocol v2 (PROTOCOL.md Part II) inherits this state machine unchanged (R-VER-1) and applies the
 *   payload ownership rule to both areas and both message tables as one unit (R-FIELD-3): the
 *   payload modelled here stands for the request area, the reply area and their tables; the
 *   in-place reply fields of v2 live inside the request area and follow the same rule.  No v2
 *   ownership rule differs, so this model checks v2 as it stands (spec/model/README.md).
 *
 * Safety (run with -DSAFETY):  assertions below, each citing the requirement it checks, plus no
 *   invalid end state (no deadlock).  Liveness (spin -DLIVE -DNOCRASH [-DNOTIMEOUT], pan -a -f):
 *   the ltl properties at the end.
 *
 * Build switches:  MAXR (requests, default 3), MAXC (crashes, default 2), NOCRASH, NOTIMEOUT,
 *   LIVE, DRAFT_REPLY_CODE, DRAFT_CLOSE_ORDER, MAXCL (clean closes, default 1), NORSPTIMEOUT,
 *   CLOSELIVE, ROGUE.  DRAFT_CLOSE_ORDER restores the 1.0 close of a responder holding a request
 *   (T3 with PEER_GONE first, then state = CLOSED): the requester's reason read after its T4 can
 *   then say DIED for a clean close (R-LIVE-5); 1.1's R-CLOSE-1 stores CLOSED before that T3.
 *   DRAFT_REPLY_CODE restores the first draft of PROTOCOL.md v1, in which
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
#ifndef MAXCL
#define MAXCL 1         /* clean closes of the responder (R-CLOSE-1/2) */
#endif
#define SEQMOD 4
#define SEQ0   2

#define IDLE      0
#define REQUESTED 1
#define REPLIED   2
#define TAKEN     4
#define BAD       3     /* a phase outside the table: only the rogue writer stores it (ROGUE) */
#define VALID(p)  ((p) == IDLE || (p) == REQUESTED || (p) == REPLIED || (p) == TAKEN)

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
bit by_close;           /* ghost: the current REPLIED was published by a responder closing while holding */
bit req_closed;         /* requester slot CLOSED (R-CLOSE-1); the slot is then not alive either */
bit rsp_closed;         /* responder slot CLOSED with pid 0 (R-CLOSE-1 done) */
bit rsp_closing;        /* responder slot state CLOSED, pid still set: judged alive (R-LIVE-6) */
bit rsp_reattached;     /* ghost: a new responder attached since the current reply was published */
byte rsp_closes;        /* clean closes of the responder so far (bounded by MAXCL) */
bit rogue_done;         /* ghost: the rogue writer made its plain store (ROGUE) */
bit req_viol;           /* ghost: the requester reported PROTOCOL_VIOLATION */
bit rsp_viol;

/* R-ERR-3, R-TIME-1: an error exit leaves no word outside the table (unless a rogue put it there)
   and no half-written payload: the actor is not inside the payload */
#define ERR_EXIT(in)  assert((VALID(phase) || rogue_done) && !(in))

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
    atomic { ((!VALID(phase) && !rogue_done)               /* R-STATE-1, R-STATE-8: only a rogue */
              || (rsp_closed && phase == TAKEN))           /* R-CLOSE-2: a closed responder never leaves TAKEN */
             -> assert(false) }
}

#ifdef ROGUE
/* R-STATE-11, R-STATE-8: a rogue (naive) writer makes one plain store of an out-of-table phase */
active proctype rogue() {
end:
    atomic { !rogue_done -> phase = BAD; rogue_done = 1 }
}
#endif

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
                :: true -> req_alive = 0; ERR_EXIT(req_in); goto attach   /* attach deadline: TIMEOUT (R-ERR-3), release the slot, try again */
                fi
            :: else -> skip                                        /* R-STATE-11: attach does not judge the word; send reports it */
            fi;
            restarted = 0
        :: else -> skip
        fi;

        do
        :: !pending && sent < MAXR ->                              /* send: T1 */
            atomic { p = phase; s = seq };
            if
            :: p == IDLE && s == last -> skip
            :: else -> assert(rogue_done); goto req_violation      /* R-STATE-8/11: only the requester leaves IDLE; else PROTOCOL_VIOLATION */
            fi;
            REQ_ENTER;                                             /* R-STATE-9: write payload, message, reply_code = 0 */
            rid = next_rid;
            pay_kind = REQ;
            pay_id = rid;
#ifdef DRAFT_REPLY_CODE
            reply_code = OK;                                       /* R-STATE-9 as written */
#endif
            REQ_LEAVE;
            cas(IDLE, last, REQUESTED, NEXT(last), ok);
            if
            :: ok -> skip
            :: else -> assert(rogue_done); goto req_violation      /* R-STATE-2/R-STATE-9: nobody else moves an IDLE word */
            fi;
            atomic { next_rid++; own = NEXT(last); last = own; pending = 1; g_pending = 1; timed_out = 0; sent++ }
        :: pending && timed_out ->                                 /* send after a timeout: R-STATE-10 */
            if
            :: atomic { phase == REPLIED && seq == own -> phase = IDLE } ->   /* T4, result dropped */
                atomic { pending = 0; g_pending = 0; timed_out = 0; last = own }
            :: atomic { phase == TAKEN && seq == own -> ERR_EXIT(req_in) }   /* OUT_OF_TURN (R-STATE-7); R-ERR-3: word and payload untouched */
            :: atomic { !VALID(phase) } -> assert(rogue_done); goto req_violation  /* R-STATE-8 */
            fi
        :: pending ->                                              /* receive */
            do
            :: atomic { phase == REPLIED && seq == own -> phase = IDLE;
                        assert(!rogue_done) } ->                   /* T4; R-STATE-8/11: never after a rogue store */
                /* R-LIVE-5: after its T4 the requester reads the responder slot's state; a reply a
                   responder published while closing (by_close) must read CLOSED (R-CLOSE-1 order) */
                assert(!(reply_code == PG && by_close && !rsp_reattached) || rsp_closing || rsp_closed);
                REQ_ENTER;
                /* R-STATE-6: an accepted reply was computed from this request;
                   R-MSG-2 / R-REC-2: PEER_GONE only when a restarted responder completed it (T8) */
                assert((reply_code == OK && !by_t8 && !by_close && pay_kind == REP && pay_id == rid)
                       || (reply_code == PG && (by_t8 || by_close)));   /* R-CLOSE-2: or a closing responder */
                REQ_LEAVE;
                atomic { pending = 0; g_pending = 0; timed_out = 0; last = own; answered++ };
                break
            :: atomic { (phase == REQUESTED || phase == TAKEN) && seq == own && !rsp_alive -> p = phase } ->
                /* R-LIVE-3: peer gone while waiting: withdraw (T5) or reclaim (T7), then PEER_GONE */
                cas(p, own, IDLE, own, ok);
                if
                :: ok -> atomic { pending = 0; g_pending = 0; timed_out = 0; last = own; ERR_EXIT(req_in) }; break  /* PEER_GONE; R-ERR-3 */
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
                ERR_EXIT(req_in);                                  /* R-TIME-1, R-ERR-3: TIMEOUT leaves a table word, no half payload */
                break
#endif
            :: atomic { !((phase == REQUESTED || phase == TAKEN || phase == REPLIED) && seq == own) }
                -> assert(rogue_done); goto req_violation          /* R-STATE-8: only after a rogue store: PROTOCOL_VIOLATION */
            od
        :: !pending && sent == MAXR -> break
        od;
        goto req_close;
req_violation:
        atomic { req_viol = 1; ERR_EXIT(req_in) };                 /* PROTOCOL_VIOLATION; R-ERR-3 */
req_close:
        atomic { req_done = 1; req_closed = 1; req_alive = 0 }     /* R-CLOSE-1: state = CLOSED, pid = 0; waiters re-check */
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
            atomic { rsp_alive = 1; rsp_closing = 0; rsp_reattached = 1 };  /* a new claim: ATTACHED */
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
                atomic { cas(TAKEN, s, REPLIED, s, ok); if :: ok -> by_t8 = 1; by_close = 0; rsp_reattached = 0 :: else -> skip fi }  /* T8; may fail: T7 won */
            :: else -> skip
            fi;
            restarted = 0
        :: else -> skip
        fi;
        /* no end label: after the requester closed, the responder must not wait forever (R-LIVE-4) */
        do
        :: atomic { phase == REQUESTED -> phase = TAKEN; held = seq; holding = 1 } ->   /* T2 */
            RSP_ENTER;
            assert(pay_kind == REQ);                               /* R-STATE-3: a published request */
            id = pay_id;
            if
            :: true ->
                pay_kind = REP;                                    /* compute the reply in place */
                pay_id = id;
                reply_code = OK;
                RSP_LEAVE;
                atomic { cas(TAKEN, held, REPLIED, held, ok); if :: ok -> by_t8 = 0; by_close = 0; rsp_reattached = 0 :: else fi }  /* T3 (reply_code = 0 above) */
                if
                :: ok -> skip
                :: else -> assert(rogue_done); goto rsp_violation  /* R-STATE-3/8: nobody takes a held request away */
                fi;
                holding = 0
            :: rsp_closes < MAXCL && !rogue_done ->
                /* R-CLOSE-2: closing while holding completes the round with PEER_GONE (T3),
                   after R-CLOSE-1 (1) stored CLOSED (the pid still set: judged alive, no T7) */
#ifndef DRAFT_CLOSE_ORDER
                rsp_closing = 1;
#endif
                reply_code = PG;
                RSP_LEAVE;
                atomic { cas(TAKEN, held, REPLIED, held, ok); if :: ok -> by_t8 = 0; by_close = 1; rsp_reattached = 0 :: else fi };
                if
                :: ok -> skip
                :: else -> assert(rogue_done); goto rsp_violation  /* R-STATE-8 */
                fi;
                holding = 0;
                goto rsp_close
            fi
        :: rsp_closes < MAXCL && !holding -> goto rsp_close        /* close while waiting (R-CLOSE-1) */
        :: atomic { req_closed && VALID(phase) && phase != REQUESTED && !holding } ->
            /* R-LIVE-4: requester slot CLOSED while waiting for a request: PEER_GONE, end of service */
            ERR_EXIT(rsp_in); goto rsp_end
#ifndef NORSPTIMEOUT
        :: atomic { VALID(phase) && phase != REQUESTED && phase != TAKEN && !holding && !req_closed ->
                    p = phase; s = seq } ->
            /* R-TIME-3: take times out: TIMEOUT, the word is left unchanged (no store on this path),
               the responder holds nothing; R-TIME-1 / R-ERR-3: a table word, no half payload.
               R-WAIT-5: the peer check (R-LIVE-4 above) comes before the deadline: !req_closed */
            atomic { assert(!holding); ERR_EXIT(rsp_in); assert(VALID(p)); p = 0; s = 0 }
#endif
        :: atomic { phase == TAKEN && !holding } -> assert(false)  /* R-STATE-8: unreachable */
        :: atomic { !VALID(phase) } -> assert(rogue_done); goto rsp_violation   /* R-STATE-8/11 */
        od;
rsp_violation:
        atomic { rsp_viol = 1; ERR_EXIT(rsp_in) };                 /* PROTOCOL_VIOLATION; R-ERR-3 */
        goto rsp_end;
rsp_close:
        /* R-CLOSE-1: store state = CLOSED, pid = 0 (release); the peer's waits re-evaluate (wake) */
        atomic { rsp_closes++; rsp_closing = 1; rsp_closed = 1; rsp_alive = 0; assert(!holding && !rsp_in) };
        if
        :: atomic { !rogue_done -> rsp_closed = 0; rsp_closing = 0; rsp_reattached = 1; restarted = 1 } -> goto again   /* a new responder attaches */
        :: true -> goto rsp_gone                                                    /* stays closed */
        fi;
rsp_end:
        atomic { rsp_closing = 1; rsp_closed = 1; rsp_alive = 0 }                 /* R-CLOSE-1: the ending responder closes */

    } unless {
        atomic { crash_rsp -> crash_rsp = 0; rsp_alive = 0; rsp_in = 0; holding = 0; restarted = 1 }
    };
    if
    :: restarted -> goto again
    :: else -> skip
    fi;
rsp_gone:
    skip
}

#ifdef LIVE
#ifdef CLOSELIVE
/* clean close, weak fairness: a requester never waits forever after the responder closed
   (R-CLOSE-1: CLOSED wakes the peer; R-CLOSE-2: a close while holding completes the round), and
   a responder waiting for a request ends once the requester slot is CLOSED (R-LIVE-4) */
ltl close_live { [] ((g_pending && rsp_closed) -> <> !g_pending) && [] (req_closed -> <> rsp_closed) }
#elif defined(NOTIMEOUT)
/* no crash, no timeout: every request is answered (R-STATE-*, R-WAIT-*) */
ltl answered_all { <> (answered == MAXR) }
#else
/* no crash, timeouts: no request stays outstanding forever (R-TIME-2, R-STATE-10) */
ltl no_stuck_request { [] (g_pending -> <> !g_pending) }
#endif
#endif
