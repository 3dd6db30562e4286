from conformance import history


def ev(peer, role, op, t0, t1, result="ok", seq=None, phase_after=None, **kw):
    d = {"peer": peer, "role": role, "op": op, "t_call": t0, "t_return": t1, "result": result,
         "seq": seq, "phase_after": phase_after}
    d.update(kw)
    return d


def logs_of(*events):
    out = {}
    for e in events:
        out.setdefault(e["peer"], []).append(e)
    return out


def good_round(t, seq, req="req", rsp="rsp"):
    # responder's take blocks from before the send until after it
    return [
        ev(rsp, "responder", "take", t, t + 30, seq=seq, phase_after="TAKEN"),
        ev(req, "requester", "send", t + 10, t + 20, seq=seq, phase_after="REQUESTED"),
        ev(req, "requester", "receive", t + 21, t + 60, seq=seq, phase_after="IDLE"),
        ev(rsp, "responder", "reply", t + 40, t + 65, seq=seq, phase_after="IDLE"),
    ]


def test_good_history_passes():
    evs = [ev("req", "requester", "create", 0, 5), ev("rsp", "responder", "attach", 6, 8)]
    for k in range(1, 20):
        evs += good_round(k * 100, k)
    v = history.check(logs_of(*evs))
    assert v.ok, v.message
    assert v.linearized == v.total


def test_reply_returns_before_receive_is_fine():
    # the responder returns from reply after the requester's receive returned: still linearizable
    evs = [ev("req", "requester", "create", 0, 5)] + good_round(100, 1)
    assert history.check(logs_of(*evs)).ok


def test_take_without_request_is_illegal():
    evs = [ev("req", "requester", "create", 0, 5),
           ev("rsp", "responder", "take", 10, 20, seq=1),
           ev("req", "requester", "send", 30, 40, seq=1)]
    v = history.check(logs_of(*evs))
    assert not v.ok
    assert "take" in v.message and "needs phase REQUESTED" in v.message


def test_second_send_ok_is_illegal_out_of_turn_is_fine():
    base = [ev("req", "requester", "create", 0, 5), ev("req", "requester", "send", 10, 20, seq=1)]
    bad = base + [ev("req", "requester", "send", 30, 40, seq=2)]
    v = history.check(logs_of(*bad))
    assert not v.ok and "send" in v.message
    good = base + [ev("req", "requester", "send", 30, 40, result="OUT_OF_TURN", injected=True)]
    assert history.check(logs_of(*good)).ok


def test_out_of_turn_when_allowed_is_flagged():
    evs = [ev("req", "requester", "create", 0, 5),
           ev("req", "requester", "send", 10, 20, result="OUT_OF_TURN")]
    v = history.check(logs_of(*evs))
    assert not v.ok and "OUT_OF_TURN" in v.message


def test_wrong_seq_is_flagged():
    evs = [ev("req", "requester", "create", 0, 5), ev("req", "requester", "send", 10, 20, seq=5)]
    v = history.check(logs_of(*evs))
    assert not v.ok and "seq" in v.message


def test_timeout_cancel_then_resend():
    evs = [ev("req", "requester", "create", 0, 5),
           ev("req", "requester", "send", 10, 20, seq=1),
           ev("req", "requester", "receive", 21, 300, result="TIMEOUT", phase_after="IDLE"),
           ev("req", "requester", "send", 310, 320, seq=2)]
    assert history.check(logs_of(*evs)).ok


def test_retry_after_timeout_in_taken():
    evs = [ev("req", "requester", "create", 0, 5),
           ev("rsp", "responder", "attach", 6, 7),
           ev("req", "requester", "send", 10, 20, seq=1),
           ev("rsp", "responder", "take", 8, 25, seq=1),
           ev("req", "requester", "receive", 21, 300, result="TIMEOUT"),
           ev("req", "requester", "send", 301, 302, result="OUT_OF_TURN"),
           ev("req", "requester", "receive", 303, 700, seq=1),
           ev("rsp", "responder", "reply", 600, 650, seq=1)]
    assert history.check(logs_of(*evs)).ok
    # the naive retry: a second send succeeds while the responder holds the request
    bad = evs[:5] + [ev("req", "requester", "send", 301, 302, seq=2)]
    assert not history.check(logs_of(*bad)).ok


def test_peer_gone_reclaim_after_crash():
    evs = [ev("req", "requester", "create", 0, 5),
           ev("rsp", "responder", "attach", 6, 7),
           ev("req", "requester", "send", 10, 20, seq=1),
           ev("rsp", "responder", "take", 8, 25, seq=1),
           ev("rsp", "responder", "crash", 30, 30),
           ev("req", "requester", "receive", 21, 900, result="PEER_GONE", phase_after="IDLE")]
    assert history.check(logs_of(*evs)).ok
    # reclaim without a crash is illegal
    bad = [e for e in evs if e["op"] != "crash"]
    assert not history.check(logs_of(*bad)).ok


def test_rogue_word_then_protocol_violation():
    word = (4 << 4) | 2  # REPLIED, seq 4
    evs = [ev("req", "requester", "create", 0, 5),
           ev("req", "requester", "send", 10, 20, seq=1),
           ev("req", "requester", "corrupt", 21, 21, field="word", value=word),
           ev("req", "requester", "receive", 22, 30, result="PROTOCOL_VIOLATION")]
    assert history.check(logs_of(*evs)).ok
    # ...but accepting it as a reply is illegal
    bad = evs[:3] + [ev("req", "requester", "receive", 22, 30, seq=4)]
    assert not history.check(logs_of(*bad)).ok


def test_plain_store_seen_in_phase_after():
    # naive responder: word reads IDLE right after its take (a plain 1 -> 0 store)
    evs = [ev("req", "requester", "create", 0, 5),
           ev("req", "requester", "send", 10, 20),
           ev("rsp", "responder", "take", 8, 25, phase_after="IDLE")]
    v = history.check(logs_of(*evs))
    assert not v.ok and "IDLE" in v.message


def test_requester_restart_discards_late_reply():
    evs = [ev("rsp", "responder", "create", 0, 5),
           ev("r1", "requester", "attach", 6, 7),
           ev("r1", "requester", "send", 10, 20, seq=1),
           ev("rsp", "responder", "take", 8, 25, seq=1),
           ev("r1", "requester", "crash", 30, 30),
           ev("r2", "requester", "attach", 40, 200),   # waits for the late reply, discards (T6)
           ev("rsp", "responder", "reply", 100, 110, seq=1),
           ev("r2", "requester", "send", 210, 220, seq=2)]
    assert history.check(logs_of(*evs)).ok


def test_responder_restart_recovers():
    evs = [ev("req", "requester", "create", 0, 5),
           ev("r1", "responder", "attach", 6, 7),
           ev("req", "requester", "send", 10, 20, seq=1),
           ev("r1", "responder", "take", 8, 25, seq=1),
           ev("r1", "responder", "crash", 30, 30),
           ev("r2", "responder", "attach", 40, 50),   # T8: error reply PEER_GONE
           ev("req", "requester", "receive", 21, 60, result="PEER_GONE")]
    assert history.check(logs_of(*evs)).ok


def test_decode_word():
    assert history.decode_word(0x11) == ("REQUESTED", 1)
    assert history.decode_word(0x24) == ("TAKEN", 2)
    assert history.decode_word(0xF)[0] == "INVALID"


# ---- replies consumed and refused (PEER.md §2 reply_code, §7.4/§7.5) ----------------------------


def refused_reply_round(reply_code_on_reply: bool):
    """v2 --reply-extents over: the responder's reply is refused (S7, CAPACITY_EXCEEDED), the
    peer completes the round with an error reply of that code inside the same line (PEER.md
    §7.4), and the requester's receive consumes it (reply_code 5, PEER.md §2)."""
    extra = {"reply_code": 5} if reply_code_on_reply else {}
    return [ev("req", "requester", "create", 0, 5),
            ev("rsp", "responder", "attach", 6, 7),
            ev("rsp", "responder", "take", 8, 25, seq=1, phase_after="TAKEN"),
            ev("req", "requester", "send", 10, 20, seq=1, phase_after="REQUESTED"),
            ev("req", "requester", "receive", 21, 80, result="CAPACITY_EXCEEDED", reply_code=5,
               phase_after="IDLE"),
            ev("rsp", "responder", "reply", 30, 60, result="CAPACITY_EXCEEDED", **extra)]


def test_refused_reply_completed_with_an_error_reply_is_a_t3():
    v = history.check(logs_of(*refused_reply_round(True)))
    assert v.ok, v.message


def test_a_consumed_reply_needs_a_reply():
    # the receive logs reply_code (it consumed a reply, T4), but no responder line published
    # one: the error reply is missing from the history
    v = history.check(logs_of(*refused_reply_round(False)))
    assert not v.ok and "receive" in v.message


def test_receive_with_reply_code_is_t4_not_a_timeout():
    # a receive that logs reply_code consumed a reply: it cannot have left the word alone
    evs = [ev("req", "requester", "create", 0, 5),
           ev("req", "requester", "send", 10, 20, seq=1),
           ev("req", "requester", "receive", 21, 40, result="HANDLER_FAILED", reply_code=18)]
    assert not history.check(logs_of(*evs)).ok
    assert history.check(logs_of(*evs[:2], ev("req", "requester", "receive", 21, 40,
                                                result="HANDLER_FAILED"))).ok
