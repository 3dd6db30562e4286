"""The relay mode of the kit (run --relay, conformance/relay.py): per-segment history with the
relay end unlogged (R-RELAY-1), the pairing of the two segments' rounds (R-RELAY-9, R-RELAY-10,
R-STATE-6 across the hop) and the catalogue's relay overrides. These checks must be able to fail:
each good history has a broken twin."""

import pytest

from conformance import catalogue, history, relay
from conformance.tests.test_history import ev, logs_of

H = frozenset({"responder"})  # the requester's segment: the near relay end is its responder
HR = frozenset({"requester"})  # the responder's segment: the far relay end is its requester


def requester_rounds(n, t0=100):
    evs = [ev("req", "requester", "create", 0, 5)]
    for k in range(1, n + 1):
        t = t0 * k
        evs += [
            ev(
                "req",
                "requester",
                "send",
                t,
                t + 10,
                seq=k,
                phase_after="REQUESTED",
                checksum=f"c{k}",
            ),
            ev(
                "req",
                "requester",
                "receive",
                t + 11,
                t + 50,
                seq=k,
                phase_after="IDLE",
                checksum=f"r{k}",
                reply_code=0,
            ),
        ]
    return evs


def responder_rounds(n, first_seq=13, t0=100, shift=20):
    evs = [ev("rsp", "responder", "attach", 1, 6, seq=first_seq - 1, phase_after="IDLE")]
    for k in range(1, n + 1):
        t, s = t0 * k + shift, first_seq + k - 1
        evs += [
            ev("rsp", "responder", "take", t - 15, t, seq=s, phase_after="TAKEN", checksum=f"c{k}"),
            ev("rsp", "responder", "reply", t + 1, t + 5, seq=s, checksum=f"r{k}"),
        ]
    return evs


def test_r_relay_1_requester_segment_history_with_unlogged_near_end():
    assert history.check(logs_of(*requester_rounds(5)), hidden=H).ok
    # without the hidden responder the same log is impossible (nobody took or replied)
    assert not history.check(logs_of(*requester_rounds(5))).ok


def test_r_relay_1_requester_segment_history_still_catches_a_double_receive():
    evs = requester_rounds(2)
    evs.append(ev("req", "requester", "receive", 260, 270, seq=2, phase_after="IDLE"))
    v = history.check(logs_of(*evs), hidden=H)
    assert not v.ok and "receive" in v.message


def test_r_relay_1_responder_segment_starts_at_the_far_ends_seq():
    # the far end created the segment and ran rounds before the responder attached (seq 12)
    assert history.check(logs_of(*responder_rounds(4)), hidden=HR).ok


def test_r_relay_1_responder_segment_history_catches_a_reply_without_take():
    evs = responder_rounds(1)
    evs.append(ev("rsp", "responder", "reply", 300, 305, seq=13))
    assert not history.check(logs_of(*evs), hidden=HR).ok


def test_r_relay_9_rounds_pair_by_content_not_seq():
    mapping, why = relay.match_rounds(requester_rounds(4), responder_rounds(4))
    assert mapping == {13: 1, 14: 2, 15: 3, 16: 4}, why


def test_r_relay_9_a_reply_to_another_request_is_caught():
    req = requester_rounds(3)
    req[4]["checksum"] = "r3"  # round 2 received round 3's reply
    mapping, why = relay.match_rounds(req, responder_rounds(3))
    assert mapping is None and "reply" in why


def test_r_relay_10_a_request_executed_twice_is_caught():
    rsp = responder_rounds(3)
    rsp[3]["checksum"] = "c1"  # the second take is the first request again
    mapping, why = relay.match_rounds(requester_rounds(3), rsp)
    assert mapping is None and "take #2" in why


def test_r_relay_16_a_request_never_executed_may_have_no_take():
    req = requester_rounds(3)
    req[4] = dict(req[4], result="PEER_GONE", checksum=None)  # round 2: far end gone
    rsp = responder_rounds(3)
    del rsp[3:5]  # ... and never executed
    mapping, why = relay.match_rounds(req, rsp)
    assert mapping is not None, why
    assert sorted(mapping.values()) == [1, 3]


def test_r_relay_9_translated_seqs_feed_the_checksum_checks():
    mapping, _ = relay.match_rounds(requester_rounds(2), responder_rounds(2))
    out = relay.translate(responder_rounds(2), mapping)
    assert [e["seq"] for e in out if e["op"] == "take"] == [1, 2]


def _case(relay_value):
    return {
        "id": "x/y",
        "requirements": ["R-STATE-3"],
        "purpose": "p",
        "relay": relay_value,
        "proc": [{"name": "req", "role": "requester", "args": "--create"}],
    }


def test_a_relay_override_must_cite_an_r_relay_id_and_say_why():
    with pytest.raises(catalogue.CatalogueError, match="cites"):
        catalogue._make_case(_case({"expect": {"req": {"exit": "OK"}}}), "t.toml")
    with pytest.raises(catalogue.CatalogueError, match="cites"):
        catalogue._make_case(
            _case({"cites": ["R-RELAY-99"], "why": "w", "expect": {"req": {"exit": "OK"}}}),
            "t.toml",
        )
    c = catalogue._make_case(
        _case({"cites": ["R-RELAY-11"], "why": "w", "expect": {"req": {"exit": "TIMEOUT"}}}),
        "t.toml",
    )
    assert c.relay["cites"] == ["R-RELAY-11"]
    assert catalogue._make_case(_case(True), "t.toml").relay == {}
    assert catalogue._make_case(_case(False), "t.toml").relay is None


def test_r_relay_11_the_far_end_may_resend_many_times_before_the_responder_takes():
    # the far end's receive timed out 48 times (T5, T1 each) while the responder slept
    evs = [
        ev("rsp", "responder", "attach", 1, 6, seq=25, phase_after="REQUESTED"),
        ev("rsp", "responder", "take", 100, 110, seq=73, phase_after="TAKEN", checksum="c1"),
        ev("rsp", "responder", "reply", 111, 115, seq=73, checksum="r1"),
    ]
    assert history.check(logs_of(*evs), hidden=HR).ok
    # ... but the responder may not report a seq that moved while it held the request
    evs.append(ev("rsp", "responder", "reply", 120, 125, seq=80))
    assert not history.check(logs_of(*evs), hidden=HR).ok
