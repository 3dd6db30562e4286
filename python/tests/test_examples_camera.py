"""The Python camera example (python/examples/camera_responder.py, camera_requester.py): the
detection rule as cpp/examples/README.md writes it, the responder's exit codes (0 when the
requester closed, 16 when it crashed: R-LIVE-4, R-LIVE-5) and its typed error on a segment with
other schemas (R-SCHEMA-10). The exchange with the C++ examples, both ways, is the ctest label
"examples" (cpp/tests/CMakeLists.txt) and ci/demo-camera.sh.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from typing import Any

import numpy as np
import pytest
from conftest import REPO
from test_processes import child_env

import shmbridge as sb

EXAMPLES = REPO / "python" / "examples"
sys.path.insert(0, str(EXAMPLES))
import camera_requester  # noqa: E402
import camera_responder  # noqa: E402


def frame(r: int) -> np.ndarray[Any, Any]:
    """Round r's frame: image[y, x, c] = (x + 2y + 3c + 7r) mod 256 (README)."""
    return (camera_requester.frame_base() + np.uint8(7 * r % 256)).astype(np.uint8)


def written_rule(image: np.ndarray[Any, Any], stamp: float) -> list[list[float]]:
    """cpp/examples/README.md's rule, one value at a time in plain Python."""
    s = sum(int(v) for v in image.reshape(-1).tolist())
    n = s % 101
    rows = []
    for i in range(n):
        rows.append(
            [
                float(i),
                float(image[i % 480, (7 * i) % 640, i % 3]),
                float((s % 1000 + i) % 1000),
                i / 2,
                float(np.float32(stamp)),
                float(n),
            ]
        )
    return rows


@pytest.mark.parametrize("r", [0, 2, 16, 255])  # n = 76, 100 (the maximum), 0, and a last frame
def test_detect_is_the_written_rule(r: int) -> None:
    image, stamp = frame(r), r / 30.0
    boxes = camera_responder.detect(image, stamp)
    want = np.array(written_rule(image, stamp), np.float32).reshape(-1, 6)
    assert boxes.dtype == np.float32 and boxes.shape == want.shape
    assert boxes.tobytes() == want.tobytes()  # bit for bit, as the C++ requester compares
    assert boxes.shape[0] == {0: 76, 2: 100, 16: 0}.get(r, boxes.shape[0])


def example(script: str, *args: str) -> list[str]:
    """The command line of python/examples/SCRIPT with ARGS, run by this interpreter."""
    return [sys.executable, str(EXAMPLES / script), *args]


def run_responder(name: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        example("camera_responder.py", "--name", name, *args),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )


def test_camera_responder_exits_0_when_the_requester_closes(segname: str) -> None:
    """R-LIVE-4: a requester that closed ends the service normally (exit 0); every reply of
    the Python requester verified, Python with Python."""
    rsp = run_responder(segname, "--quiet", "--timeout", "20")
    req = subprocess.run(
        example("camera_requester.py", "--name", segname, "--rounds", "20"),
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
    )
    out, err = rsp.communicate(timeout=30)
    assert req.returncode == 0, req.stdout + req.stderr
    assert "summary: rounds 20, verified 20, failures 0" in req.stdout
    assert rsp.returncode == 0, err
    assert "served 20 requests" in out


def test_camera_responder_exits_16_when_the_requester_crashes(segname: str) -> None:
    """R-LIVE-5: a requester killed mid-run is a crash, not an end of service: exit 16
    (PEER_GONE) and a message that says so."""
    rsp = run_responder(segname, "--quiet", "--timeout", "20")
    req = subprocess.Popen(
        example("camera_requester.py", "--name", segname, "--rounds", "99999"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        assert req.stdout is not None
        for line in req.stdout:
            if line.startswith("round 10: ok"):
                break
        else:
            pytest.fail(f"the requester never reached round 10: {req.stderr.read()}")
        req.send_signal(signal.SIGKILL)
        req.wait(timeout=10)
        out, err = rsp.communicate(timeout=30)
    finally:
        for p in (req, rsp):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert rsp.returncode == sb.exit_code(sb.ErrorCode.PEER_GONE) == 16, out + err
    assert "the requester crashed after" in err


@pytest.mark.parametrize(
    ("request_schema", "reply_schema", "error"),
    [
        (camera_responder.REQUEST, sb.Schema(dets=(np.float32, (sb.upto(100), 6))), "SCHEMA"),
        (camera_responder.REQUEST, sb.Schema(boxes=(np.float64, (sb.upto(100), 6))), "DTYPE"),
        (
            sb.Schema(image=(np.uint8, (240, 320, 3)), stamp=(np.float64, ())),
            camera_responder.REPLY,
            "SHAPE",
        ),
    ],
)
def test_camera_responder_names_the_field_a_segment_declares_otherwise(
    segname: str, request_schema: sb.Schema, reply_schema: sb.Schema, error: str
) -> None:
    """R-SCHEMA-10: attach compares the expected schemas field by field; the responder exits
    with the error's spec exit code and a message naming the field, and claims nothing."""
    code = sb.ErrorCode[f"{error}_MISMATCH"]
    field = "image" if error == "SHAPE" else reply_schema.names[0]
    with sb.MessageRequester.create(segname, request_schema, reply_schema, timeout=5):
        p = subprocess.run(
            example("camera_responder.py", "--name", segname),
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
        )
    assert p.returncode == sb.exit_code(code), p.stdout + p.stderr
    assert repr(field) in p.stderr and code.name in p.stderr, p.stderr


def readme_example_blocks() -> list[tuple[str, list[str]]]:
    """The code blocks of README.md's "API" section whose first line names an example file
    (``// cpp/examples/x.cpp: ...`` or ``# python/examples/x.py``): (path, the other lines)."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    api = text.split("\n## API\n", 1)[1].split("\n## ", 1)[0]
    blocks = []
    for block in re.findall(r"```(?:cpp|python)\n(.*?)```", api, flags=re.S):
        first, *rest = block.splitlines()
        m = re.match(r"(?://|#) ((?:cpp|python)/examples/[\w.]+)", first)
        if m:
            blocks.append((m.group(1), rest))
    return blocks


def test_readme_v2_api_lines_are_the_tested_examples() -> None:
    """README.md shows the v2 API with lines of the camera examples (which the ctest label
    "examples" and ci/demo-camera.sh run): every line of those blocks is in the file it names,
    whitespace aside, so the README cannot drift from code that compiles and runs."""
    blocks = readme_example_blocks()
    named = {path for path, _ in blocks}
    assert named == {
        "cpp/examples/camera_requester.cpp",
        "cpp/examples/camera_responder.cpp",
        "python/examples/camera_responder.py",
        "python/examples/camera_requester.py",
    }, named
    for path, lines in blocks:
        source = " ".join((REPO / path).read_text(encoding="utf-8").split())
        for line in lines:
            norm = " ".join(line.split())
            assert not norm or norm in source, f"README.md line not in {path}: {line!r}"
