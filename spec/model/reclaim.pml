/*
 * shmbridge stale-segment reclaim (spec/PROTOCOL.md §2.1 R-STALE-1/2/3, §3.3, R-LIVE-1/2) --
 * SPIN model of two reclaimers racing on the creator slot of a stale segment.
 *
 * What is modelled
 *   - the OS name: `name` holds the id of the segment the name refers to (0 = no object);
 *     shm_open(name) is a read of `name`, unlink(name) stores 0, create (O_CREAT|O_EXCL) binds
 *     a fresh segment id only if `name` is 0 (atomically);
 *   - per segment, the creator slot: `cpid` (the claim word, CAS only) and `cst` (start_time,
 *     a separate plain field, R-LIVE-1: store start_time = 0, CAS pid, then write start_time),
 *     and the ghost
 *     `made_by` (who created the segment);
 *   - segment 1 is stale: made by the dead creator D (pid 3, start stamp SD);
 *   - reclaimers R1 (pid 1, stamp S1) and R2 (pid 2, stamp S2), both alive throughout.  Each
 *     opens the name, reads the slot (pid, then start_time: two loads), judges liveness
 *     (R-LIVE-2: the pid exists and its stamp equals start_time when non-zero), and if dead
 *     claims the slot (R-STALE-3: start_time = 0, CAS pid), writes its start_time, unlinks,
 *     creates a fresh segment; ALREADY_EXISTS if the slot holds a live process.  A pid that
 *     exists with start_time 0 is alive.  run_spin.sh reclaim expects no errors.
 *
 * Property (R-STALE-3, R-ERR-3, R-SEG-3): no reclaimer unlinks a segment created by another live
 *   reclaimer (assert at the unlink).
 *
 * The first draft of R-STALE-3 (-DDRAFT_RECLAIM: no start_time = 0 before the CAS) allowed: R1 CASes pid D -> R1 on the stale segment; R2, which
 *   opened the stale segment too, reads pid = R1 but still start_time = SD (R1 has not written
 *   its own yet, or never does on an object it unlinks), judges "R1 with stamp SD" dead, CASes
 *   R1 -> R2 (it succeeds: the value it read), while R1 unlinks and creates a fresh segment under
 *   the name; R2 then unlinks the name, which now is R1's fresh segment.  run_spin.sh
 *   reclaim-draft expects SPIN to find this.
 *
 * Build switches
 *   DRAFT_RECLAIM  the first draft: the claimer does not clear start_time before its pid CAS
 *              (expected violation, mode reclaim-draft).
 *   FIX_INODE  (with DRAFT_RECLAIM) unlink only if the name still refers to the inspected segment (fstat of a fresh
 *              shm_open compared with the inspected fd: same inode), checked in a step of its
 *              own before unlink, as an implementation can do it.  (Not enough: see README.md.)
 *   (FIX_ZERO, the fix README.md proposed, is now the default and in the spec, R-LIVE-1 and
 *   R-STALE-3: a claimer stores start_time = 0 before its pid CAS and writes its own stamp after;
 *   a judge loads pid before start_time; a pid that exists with start_time 0 is alive.)
 */

#define D   3           /* the dead creator of the stale segment */
#define SD  9           /* its start stamp */
#define S1  5
#define S2  6
#define NSEG 5          /* segment ids 1..3 (1 = stale, fresh ones 2, 3) */

byte name = 1;          /* the OS name -> segment id; 0: no object */
byte cpid[NSEG];        /* creator slot pid (claim word) */
byte cst[NSEG];         /* creator slot start_time */
byte made_by[NSEG];     /* ghost: creator of the segment */
byte next_seg = 2;

/* R-LIVE-2: alive iff the pid exists and its stamp equals start_time when non-zero */
#define ALIVE(p, t) ((p) == 1 && ((t) == 0 || (t) == S1) || (p) == 2 && ((t) == 0 || (t) == S2))

init {
    cpid[1] = D; cst[1] = SD; made_by[1] = D;
    atomic { run reclaimer(1, S1); run reclaimer(2, S2) }
}

proctype reclaimer(byte me; byte st) {
    byte s, p, t;
    bit ok;
open:
    s = name;                                           /* shm_open(name) */
    if
    :: s == 0 ->
        atomic {                                        /* create: O_CREAT|O_EXCL (R-SEG-1) */
            if
            :: name == 0 -> s = next_seg; next_seg++; name = s;
                            cpid[s] = me; cst[s] = st; made_by[s] = me   /* header before magic (R-SEG-6) */
            :: else -> goto open                        /* EEXIST: inspect again */
            fi
        };
        goto done
    :: else -> skip
    fi;
    p = cpid[s];                                        /* load pid ...            */
    t = cst[s];                                         /* ... then start_time     */
    if
    :: ALIVE(p, t) -> goto done                         /* ALREADY_EXISTS (R-SEG-4, R-STALE-2) */
    :: else -> skip
    fi;
#ifndef DRAFT_RECLAIM
    cst[s] = 0;                                         /* R-LIVE-1, R-STALE-3: clear the stamp before the claim */
#endif
    atomic { if :: cpid[s] == p -> cpid[s] = me; ok = 1 :: else -> ok = 0 fi };  /* R-STALE-3: CAS pid */
    if
    :: !ok -> goto open                                 /* someone else claimed it: inspect again */
    :: else -> skip
    fi;
    cst[s] = st;                                        /* R-LIVE-1: then write start_time */
#ifdef FIX_INODE
    if
    :: name != s -> goto open                           /* the name moved on: do not unlink */
    :: else -> skip
    fi;
#endif
    atomic {                                            /* unlink(name) */
        /* R-STALE-3, R-SEG-3, R-ERR-3: never unlink a segment another live reclaimer created */
        assert(name == 0 || made_by[name] == D || made_by[name] == me);
        name = 0
    };
    goto open;                                          /* create the fresh one */
done:
    skip
}
