"""`edge-ser report`: a recorded result log -> self-contained HTML (or PNG); bad input is one line, exit 2."""

from __future__ import annotations

import json
import re
import sys

import pytest
from conftest import SPEECH, run_cli

from edge_ser.cli import main
from edge_ser.errors import UserError
from edge_ser.report import read_results, time_axis, write_report


@pytest.fixture(scope="module")
def log(tmp_path_factory):
    """What `edge-ser listen --input fixture` printed: 10 result lines."""
    proc = run_cli("listen", "--input", str(SPEECH))
    assert proc.returncode == 0, proc.stderr
    path = tmp_path_factory.mktemp("report") / "results.jsonl"
    path.write_text(proc.stdout)
    return path


def run_main(*args: str, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def embedded(page: str) -> dict:
    return json.loads(re.search(r'<script type="application/json" id="report-data">(.*?)</script>', page,
                                re.S).group(1))


def test_html_report_is_self_contained(log, tmp_path, capsys):
    out = tmp_path / "report.html"
    code, stdout, _ = run_main("report", str(log), "--out", str(out), capsys=capsys)
    windows = len(log.read_text().splitlines())
    assert windows >= 10 and code == 0 and stdout.strip() == f"{out}: {windows} windows"
    page = out.read_text()
    assert not re.search(r'(src|href)="(https?:)?//', page)  # no CDN, nothing fetched: works offline
    assert "uPlot" in page and "report-data" in page and "<script src=" not in page
    data = embedded(page)
    assert len(data["results"]) == windows  # read faster than real time
    assert data["time_axis"] == "window_start"
    assert data["results"][-1] == json.loads(log.read_text().splitlines()[-1])
    rows = re.findall(r"<tr><td>([^<]+)</td>.*?<td class=\"n\">(\d+) ", page)
    labels = [json.loads(line)["label"] for line in log.read_text().splitlines()]
    assert dict(rows) == {lb.replace("_", " / "): str(labels.count(lb)) for lb in
                          ("anger_disgust", "fear_surprise", "happiness", "sadness", "neutral")}
    assert labels.count("anger_disgust") >= 4 and labels.count("sadness") >= 4  # the fixture's two halves


def test_report_reads_an_mqtt_dump_and_skips_what_is_not_a_result(log, tmp_path):
    lines = log.read_text().splitlines()
    dump = tmp_path / "mqtt.txt"
    dump.write_text("\n".join(
        ["edge_ser/kitchen/status online", 'edge_ser/kitchen/stats {"windows": 3, "dropped": 0}']
        + [f"edge_ser/kitchen/emotion {line}" for line in lines]
        + ['{"path": "a.wav", "label": "sadness", "probs": {"sadness": 1.0}}', "",
           "edge_ser/kitchen/status offline"]
    ))
    assert len(read_results(dump)) == len(lines)
    assert write_report(dump, tmp_path / "r.html") == len(lines)


def test_time_axis_is_the_wall_clock_for_a_live_log():
    paced = [{"ts": f"2026-12-06T10:00:{i:02d}.000Z", "window_start": float(i)} for i in range(10)]
    squeezed = [{"ts": "2026-12-06T10:00:00.000Z", "window_start": float(i)} for i in range(10)]
    assert time_axis(paced) == "ts" and time_axis(squeezed) == "window_start"


def test_png_report(log, tmp_path):
    pytest.importorskip("matplotlib", reason="the [train] extra installs matplotlib")
    out = tmp_path / "report.png"
    assert write_report(log, out) == len(log.read_text().splitlines())
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_png_without_matplotlib_is_one_clear_error(log, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(UserError, match="needs matplotlib"):
        write_report(log, tmp_path / "r.png")
    # html does not need it
    assert write_report(log, tmp_path / "r.html") == len(log.read_text().splitlines())


@pytest.mark.parametrize("content, fragment", [
    (None, "cannot read"),
    ("", "no result messages"),
    ('{"windows": 3}\n', "no result messages"),
    ("hello world\n", "line 1: not a JSON result message"),
    ('{"ts": "x", "window_start": 0,\n', "line 1: not JSON"),
    ("[1, 2]\n", "line 1: expected a JSON object"),
    ('{"ts": "x", "window_start": 0, "label": "a", "probs": [1]}\n', "malformed"),
])
def test_bad_log_is_one_line_exit_2(tmp_path, capsys, content, fragment):
    path = tmp_path / "log.jsonl"
    if content is not None:
        path.write_text(content)
    code, stdout, err = run_main("report", str(path), "--out", str(tmp_path / "r.html"), capsys=capsys)
    assert code == 2 and stdout == ""
    assert err.count("\n") == 1 and err.startswith("edge-ser: error: ") and fragment in err, err
    assert not (tmp_path / "r.html").exists()


def test_bad_output_is_one_line_exit_2(log, tmp_path, capsys):
    code, _, err = run_main("report", str(log), "--out", str(tmp_path / "r.pdf"), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and ".html or .png" in err
    code, _, err = run_main("report", str(log), "--out", str(tmp_path / "missing" / "r.html"), capsys=capsys)
    assert code == 2 and err.count("\n") == 1 and "cannot write" in err
