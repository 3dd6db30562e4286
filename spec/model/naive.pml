/*
 * The original naive design (spec/PROTOCOL.md §1; /work/shared/seed): one status word
 * 0 -> 1 -> 0 -> 2 -> 0 written with plain loads and stores, plus a requester-side timeout and
 * retry, as a user of the original code would add it.
 *
 *   requester (C++ write/read):  wait status == 0; write payload; status = 1;
 *                                wait status == 2 (or give up: timeout -> retry from the top);
 *                                read payload; status = 0
 *   responder (Python read_from_cpp / write_to_cpp):
 *                                wait status == 1; read payload; status = 0;
 *                                compute; wait status == 0; write payload; status = 2
 *
 * The property the v1 protocol keeps (R-STATE-6: every reply the requester accepts was computed
 * from its own request) FAILS here: after a timeout the requester sees the ambiguous 0 left by the
 * responder's "take", writes a new request, and then accepts the reply computed from the old one.
 * run_spin.sh naive succeeds only if SPIN finds this violation.
 */

#ifndef MAXR
#define MAXR 2
#endif

byte status;            /* the naive word: 0, 1 or 2, plain stores */
byte pay_id;            /* payload: id of the request it was written for / computed from */
bit pay_is_reply;
byte next_rid = 1;      /* ghost: request ids */
byte sent;

active proctype requester() {
    byte rid;
    do
    :: sent < MAXR ->
        status == 0;                    /* write(): wait for 0 */
        rid = next_rid; next_rid++;
        pay_id = rid;                   /* memcpy(arrayData, ...) */
        pay_is_reply = 0;
        status = 1;                     /* plain store */
        sent++;
        if
        :: status == 2 ->               /* read(): wait for 2 */
            assert(pay_is_reply && pay_id == rid);   /* R-STATE-6: the reply is for this request */
            status = 0
        :: true -> skip                 /* timeout: give up and retry with a new request */
        fi
    :: sent == MAXR -> break
    od
}

active proctype responder() {
    byte id;
end:
    do
    :: status == 1 ->                   /* read_from_cpp(): wait for 1 */
        id = pay_id;                    /* np.frombuffer view */
        status = 0;                     /* "clear" */
        id = id;                        /* compute (array + 1.0) */
        status == 0;                    /* write_to_cpp(): wait for 0 */
        pay_id = id;                    /* write the reply */
        pay_is_reply = 1;
        status = 2                      /* plain store */
    od
}
