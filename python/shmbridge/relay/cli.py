"""``shmbridge relay near|far|keygen`` (spec/RELAY.md R-RELAY-19).

# host B (responder's host): the far end attaches to B's segment as its requester
shmbridge relay far SEG_B --bind tcp://127.0.0.1:5555
# host A (requester's host): the near end creates A's segment as the far end declares it
shmbridge relay near SEG_A --connect tcp://127.0.0.1:5555 --create
"""

from __future__ import annotations

import argparse
import signal
import sys
from collections.abc import Sequence
from typing import Any

from ..channel import Options
from ..errors import Error, ErrorCode, InvalidArgument, exit_code

__all__ = ["main"]


def _shape(text: str) -> tuple[int, ...]:
    """--shape as the conformance peer reads it (PEER.md §1)."""
    from ..peer import UsageError, parse_shape

    try:
        shape = parse_shape(text)
    except UsageError as e:
        raise InvalidArgument(f"{e}: expected comma-separated extents >= 0") from None
    assert shape is not None
    return shape


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="shmbridge relay",
        description="Carry a shmbridge channel between two hosts over ZeroMQ (spec/RELAY.md).",
    )
    sub = p.add_subparsers(dest="end", required=True)
    for end in ("near", "far"):
        s = sub.add_parser(
            end,
            help="requester's host: the local responder"
            if end == "near"
            else "responder's host: the local requester",
        )
        s.add_argument("name", help="the local segment name")
        if end == "near":
            s.add_argument("--connect", required=True, help="the far end, tcp://HOST:PORT")
            s.add_argument(
                "--round-timeout",
                type=float,
                default=None,
                help="complete a round held this long with TIMEOUT (default: never)",
            )
            s.add_argument(
                "--min-rate-mib",
                type=float,
                default=4.0,
                help="the slowest link rate (MiB/s) assumed while a round is in flight: the far "
                "end may be silent for the heartbeat window plus the round's bytes at this rate "
                "(R-RELAY-13; default 4)",
            )
            s.add_argument("--curve-server", help="the far end's public key file (pinned)")
        else:
            s.add_argument("--bind", required=True, help="where to listen, tcp://HOST:PORT")
            s.add_argument("--curve-clients", help="directory of admitted client public keys")
        s.add_argument("--create", action="store_true",
                       help="create the segment (near without a declaration: as the far end "
                       "declares it)")  # fmt: skip
        s.add_argument("--dtype", help="v1 --create: the dtype")
        s.add_argument("--shape", help="v1 --create: the shape, e.g. 512,512")
        s.add_argument("--request-schema", help="v2 --create: SPEC (spec/PEER.md §7.2)")
        s.add_argument("--reply-schema", help="v2 --create: SPEC")
        s.add_argument("--protocol", type=int, choices=(1, 2), default=0,
                       help="attach with this API (default: the segment's)")  # fmt: skip
        s.add_argument("--heartbeat-ms", type=float, default=200.0)
        s.add_argument("--heartbeat-misses", type=int, default=3)
        s.add_argument("--allow-remote", action="store_true",
                       help="allow a non-loopback address (R-RELAY-17)")  # fmt: skip
        s.add_argument("--curve-secret", help="this end's secret key file (keygen's .key_secret)")
        s.add_argument("--log", default="-", help="JSON-lines log: a file, or - for stdout")
        s.add_argument("--spin-us", type=float, default=0.0,
                       help="spin budget of the local waits (R-WAIT-1; default 0: block at once, "
                       "leaving the cores to the programs at both ends)")  # fmt: skip
    k = sub.add_parser("keygen", help="write PREFIX.key and PREFIX.key_secret (CurveZMQ)")
    k.add_argument("prefix")
    return p


def _declaration(a: argparse.Namespace) -> tuple[Any, Any]:
    """(v1 (dtype, shape) or None, v2 (request, reply) schemas or None) from the flags."""
    v1 = a.dtype is not None or a.shape is not None
    v2 = a.request_schema is not None or a.reply_schema is not None
    if (v1 or v2) and not a.create:
        raise InvalidArgument("--dtype/--shape/--*-schema declare a segment: give --create too")
    if v1 and v2:
        raise InvalidArgument("give either --dtype/--shape (v1) or the two schemas (v2), not both")
    if v1:
        if a.dtype is None or a.shape is None:
            raise InvalidArgument("a v1 --create needs both --dtype and --shape")
        return (a.dtype, _shape(a.shape)), None
    if v2:
        if a.request_schema is None or a.reply_schema is None:
            raise InvalidArgument("a v2 --create needs --request-schema and --reply-schema")
        from ..peer import UsageError, parse_spec

        try:
            return None, (parse_spec(a.request_schema), parse_spec(a.reply_schema))
        except UsageError as e:
            raise InvalidArgument(str(e)) from None
    return None, None


def _run(a: argparse.Namespace) -> int:
    from .link import Log, check_endpoint, is_remote, keygen, load_curve

    if a.end == "keygen":
        pub, sec = keygen(a.prefix)
        print(f"public key: {pub}\nsecret key: {sec} (mode 0600; keep it on this host)")
        return 0
    endpoint = a.connect if a.end == "near" else a.bind
    check_endpoint(endpoint, a.allow_remote, "--connect" if a.end == "near" else "--bind")
    if a.heartbeat_ms <= 0 or a.heartbeat_misses < 1:
        raise InvalidArgument("--heartbeat-ms must be > 0 and --heartbeat-misses >= 1")
    if a.end == "near" and not a.min_rate_mib > 0:
        raise InvalidArgument(f"--min-rate-mib must be > 0 (MiB/s), found {a.min_rate_mib}")
    curve = load_curve(
        a.curve_secret,
        getattr(a, "curve_server", None),
        getattr(a, "curve_clients", None),
    )
    if a.end == "near" and curve is not None and curve.server_public is None:
        raise InvalidArgument("the near end's CURVE needs --curve-server (the far end's key)")
    if a.end == "far" and curve is not None and getattr(a, "curve_server", None):
        raise InvalidArgument("--curve-server is the near end's flag")
    out = sys.stdout if a.log == "-" else open(a.log, "a", encoding="utf-8")  # noqa: SIM115
    log = Log(a.end, out)
    if is_remote(endpoint) and curve is None:
        log.warn(f"{endpoint} leaves this host without CurveZMQ: the arrays travel in clear text "
                 "(shmbridge relay keygen; --curve-secret/--curve-server)")  # fmt: skip
    v1, v2 = _declaration(a)
    hb = a.heartbeat_ms / 1000.0
    if a.spin_us < 0:
        raise InvalidArgument("--spin-us must be >= 0")
    opts = Options(spin=a.spin_us / 1e6)
    relay: Any
    if a.end == "near":
        from .local import Declaration
        from .near import NearConfig, NearRelay

        decl = None
        if v1 is not None:
            decl = Declaration.v1_of(*v1)
        elif v2 is not None:
            decl = Declaration.v2_of(*v2)
        relay = NearRelay(
            NearConfig(
                a.name,
                a.connect,
                a.create,
                decl,
                a.protocol,
                hb,
                a.heartbeat_misses,
                a.round_timeout,
                curve,
                opts,
                a.min_rate_mib * 2**20,
            ),
            log,
        )
    else:
        from .far import FarConfig, FarRelay

        relay = FarRelay(
            FarConfig(a.name, a.bind, v1, v2, a.protocol, hb, a.heartbeat_misses, curve, opts),
            log,
        )

    def stop(signum: int, frame: Any) -> None:
        relay.stop = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    code = 0
    try:
        relay.run()
    except Error as e:
        log.event("exit", error=e.name, message=e.message)
        print(f"shmbridge relay {a.end}: {e}", file=sys.stderr)
        code = e.exit_code
    except Exception as e:
        err = getattr(e, "error", None)
        if not isinstance(err, Error):
            raise
        log.event("exit", error=err.name, message=err.message)
        print(f"shmbridge relay {a.end}: {err}", file=sys.stderr)
        code = err.exit_code
    finally:
        relay.close()
        log.event("stats", **log.stats)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    a = build_parser().parse_args(argv)
    try:
        import zmq  # noqa: F401
    except ImportError:
        print(
            "shmbridge relay: pyzmq is not installed; install the relay extra: "
            "pip install 'shmbridge[relay]'",
            file=sys.stderr,
        )
        return 2
    try:
        return _run(a)
    except Error as e:
        print(f"shmbridge relay {a.end}: {e}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        print(f"shmbridge relay {a.end}: OS_ERROR: {e}", file=sys.stderr)
        return exit_code(ErrorCode.OS_ERROR)


if __name__ == "__main__":
    raise SystemExit(main())
