"""Documentation numbers come from bench/results: generated regions, load marks, `python -m bench all`.

Pure file generation and fake models: nothing here benchmarks the machine.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from conftest import FakeModel

from bench import cli as bench_cli
from bench import compare, latency, regions, render_perf, render_quality, stream_eval, tables
from edge_ser import benchmark

REPO = Path(__file__).resolve().parents[1]
MEASURED = re.compile(r"\b\d+(?:\.\d+)?\s?(?:ms|MB|KB|GB|%)(?![\w-])|\b\d+\.\d+x\b|\b0\.\d{3}\b")
"""A measured figure in prose: a time, a size, a percentage, a speed-up or a 3-decimal score."""


def _latency_record(model: str, p50: float, loads: list[float], **extra) -> dict:
    return {"model": model, "config": model, "backend": "tflite", "precision": "int8", "threads": 1,
            "p50_ms": p50, "p95_ms": p50 + 1, "p99_ms": p50 + 2, "infer_p50_ms": p50 - 0.1, "rss_mb": 70.0,
            "cpu_pct": 0.6, "cpu_ms_per_window": p50, "machine": "Test CPU, 2 cores, Linux x86_64",
            "cores": 2, "command": "python3 -m bench.latency", "version": "0.1.0", "n_windows": 10,
            "rtf": p50 / 1000, "load_1min": loads, "date_utc": "2026-12-06T00:00:00Z", **extra}


# -- the committed documentation ----------------------------------------------------------------------

def test_every_region_of_the_docs_matches_the_committed_results():
    assert tables.stale() == [], "run: python -m bench tables"


def test_every_doc_has_regions_and_every_region_has_a_generator():
    for doc in tables.DOCS:
        names = regions.names((REPO / doc).read_text())
        assert names, doc
        assert set(names) <= set(tables.GENERATORS), (doc, set(names) - set(tables.GENERATORS))


def _prose(text: str) -> str:
    """Text outside generated regions, fenced code blocks and inline code spans."""
    text = regions.outside(text)
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    return re.sub(r"`[^`\n]*`", "", text)


@pytest.mark.parametrize("doc", tables.DOCS)
def test_prose_quotes_no_measured_number_outside_generated_regions(doc):
    hits = MEASURED.findall(_prose((REPO / doc).read_text()))
    assert hits == [], f"{doc}: move these into a generated region or refer to its table: {hits}"


def test_the_prose_check_catches_a_hand_written_latency():
    text = "The CNN takes 1.8 ms per window.\n<!-- bench.tables:x -->\n5.8 ms\n<!-- /bench.tables:x -->\n"
    assert MEASURED.findall(_prose(text)) == ["1.8 ms"]


# -- regions -------------------------------------------------------------------------------------------

def test_fill_replaces_block_and_inline_regions_and_keeps_the_prose():
    text = ("intro 1\n<!-- bench.tables:a -->\nold table\n<!-- /bench.tables:a -->\n"
            "soak (<!-- bench.tables:b -->old<!-- /bench.tables:b -->) end\n")
    out = regions.fill(text, lambda name: {"a": "| new |\n", "b": "\n0 lost\n"}[name])
    assert out == ("intro 1\n<!-- bench.tables:a -->\n| new |\n<!-- /bench.tables:a -->\n"
                   "soak (<!-- bench.tables:b -->0 lost<!-- /bench.tables:b -->) end\n")
    assert regions.fill(out, lambda name: {"a": "| new |", "b": "0 lost"}[name]) == out


@pytest.mark.parametrize("text", ["<!-- bench.tables:a -->\nx\n",
                                  "x\n<!-- /bench.tables:a -->\n",
                                  "<!-- bench.tables:a -->\n<!-- /bench.tables:b -->\n"])
def test_unbalanced_markers_are_an_error(text):
    with pytest.raises(regions.RegionError):
        regions.names(text)


def test_a_region_without_generator_is_an_error():
    with pytest.raises(regions.RegionError, match="no generator"):
        tables.render("<!-- bench.tables:nope -->\n<!-- /bench.tables:nope -->\n", tables.Results())


def test_stale_names_the_edited_region_and_rewrite_fixes_it(tmp_path):
    for doc in tables.DOCS:
        (tmp_path / doc).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / doc, tmp_path / doc)
    readme = tmp_path / "README.md"
    text = readme.read_text()
    readme.write_text(text.replace("<!-- /bench.tables:latency -->", "| hand-edited | 1.8 |\n"
                                   "<!-- /bench.tables:latency -->"))
    assert tables.stale(tmp_path) == ["README.md: latency"]
    assert tables.rewrite(tmp_path) == ["README.md"]
    assert readme.read_text() == text and tables.stale(tmp_path) == []


def test_tables_check_command_exits_1_on_a_stale_region(tmp_path, monkeypatch):
    monkeypatch.setattr(tables, "stale", lambda root, res: ["README.md: models"])
    result = CliRunner().invoke(tables.main, ["--check"])
    assert result.exit_code == 1 and "README.md: models" in result.output


# -- generated from the records, whatever they hold -------------------------------------------------

def test_records_measured_under_load_are_marked_with_a_footnote():
    idle = _latency_record("yamnet-a", 5.8, [0.4, 0.6])
    busy = _latency_record("yamnet-b", 9.1, [0.9, 4.2])
    table = render_perf.latency_table([idle, busy])
    rows = {ln.split("|")[1].strip(): ln for ln in table.splitlines() if ln.startswith("| yamnet")}
    assert render_perf.LOADED_MARK not in rows["yamnet-a"]
    assert rows["yamnet-b"].rstrip().endswith(f"{render_perf.LOADED_MARK} |")
    assert "measured under load" in table
    assert render_perf.LOADED_MARK not in render_perf.latency_table([idle])


def test_load_limit_is_cores_minus_one_and_old_records_give_cores_in_their_machine_line():
    assert benchmark.load_limit(2) == 1 and benchmark.load_limit(4) == 3 and benchmark.load_limit(1) == 1
    assert benchmark.cores_of({"machine": "AMD EPYC, 2 cores, Linux"}) == 2
    assert benchmark.cores_of({"machine": "x86_64 2 cpu, CPython"}) == 2
    assert benchmark.is_loaded([0.9, 1.2], 2) and not benchmark.is_loaded([0.9, 1.0], 2)
    assert benchmark.load_warning([3.0, 4.1], 2).startswith("warning: measured under load")
    assert benchmark.load_warning([0.2, 0.3], 2) is None


def test_edge_ser_bench_says_when_it_ran_under_load(monkeypatch, capsys):
    rec = _latency_record("fake", 5.0, [3.5, 4.0])
    monkeypatch.setattr(benchmark, "run", lambda *a, **kw: [dict(rec)])
    monkeypatch.setattr(benchmark.os, "cpu_count", lambda: 2)
    benchmark.cli_bench(("fake",), 4.0, (1,), None, as_json=True)
    out, err = capsys.readouterr()
    assert "measured under load" in err and "3.50 / 4.00" in err
    assert json.loads(out)["load_1min"] == [3.5, 4.0]  # stdout stays one JSON record per line
    monkeypatch.setattr(benchmark, "run", lambda *a, **kw: [_latency_record("fake", 5.0, [0.1, 0.2])])
    benchmark.cli_bench(("fake",), 4.0, (1,), None, as_json=False)
    out, err = capsys.readouterr()
    assert "under load" not in out + err and "load average before / after: 0.1 / 0.2" in out


def test_a_new_model_in_the_results_gets_its_rows_without_code_changes():
    accuracy = [
        {"model": "whisper-enc+mlp", "protocol": "speaker_independent", "corpus": "all+", "classes": "merged",
         "accuracy": 0.61, "macro_f1": 0.6, "uar": 0.62, "val_uar": 0.63, "n_test": 5555},
        *[{"model": "whisper-enc+mlp", "protocol": "cross_corpus", "corpus": c, "classes": "merged",
           "accuracy": 0.4, "macro_f1": 0.4, "uar": u, "n_test": 100, "room": 1}
          for c, u in (("tess", 0.5), ("nemo", 0.3))],
    ]
    table = render_quality.si_table(accuracy)
    assert "| whisper-enc+mlp |" in table and "| 61.0 |" in table
    assert "2 of 8 folds" in table  # a partial LOCO candidate gets no mean
    full = accuracy + [{"model": "whisper-enc+mlp", "protocol": "cross_corpus", "corpus": c,
                        "classes": "merged", "accuracy": 0.4, "macro_f1": 0.4, "uar": 0.45, "n_test": 100,
                        "room": 1}
                       for c in ("ravdess", "savee", "crema-d", "banglaser", "turev-db", "ased")]
    full.append(dict(full[0], model="other", val_uar=0.9))
    table = render_quality.si_table(full)
    assert "| **0.438** | 0.300 (nemo) |" in table  # mean and worst of the 8 held-out corpora
    assert table.index("| whisper-enc+mlp |") < table.index("| other |")  # LOCO ranks before SI val
    lat = render_perf.latency_table([_latency_record("whisper-enc-mlp-fp16", 41.0, [0.2, 0.3])])
    assert "| whisper-enc-mlp-fp16 |" in lat and "| 41.0 |" in lat


def test_models_table_prefers_the_sweep_and_falls_back_to_an_interleaved_run():
    sweep = _latency_record("m", 5.8, [0.5, 0.5])
    run = _latency_record("m", 9.0, [3.0, 3.0], run="interleaved: m vs n")
    blas = _latency_record("n", 3.0, [3.0, 3.0], run="interleaved: m vs n, OPENBLAS_NUM_THREADS=1")
    plain = _latency_record("n", 4.0, [3.0, 3.0], run="interleaved: m vs n")
    assert render_perf.model_latency([run, sweep], "m") is sweep
    assert render_perf.model_latency([plain, blas], "n") is plain
    assert render_perf.model_latency([blas], "n") is blas
    assert render_perf.model_latency([sweep], "other") is None


def test_footprint_targets_say_met_or_not_per_model():
    def fp(model, rss, cpu):
        return {"model": model, "peak_rss_mb": rss,
                "silent": {"cpu_pct": cpu, "peak_rss_mb": rss, "load_1min": 0.1},
                "speech": {"cpu_pct": 1.0, "peak_rss_mb": rss, "load_1min": 0.1}}

    out = render_perf.footprint_targets([fp("yamnet-a", 70, 0.5), fp("yamnet-b", 85, 0.5),
                                         fp("hubert-c", 200, 9), fp("other", 999, 50)])
    rows = {ln.split("|")[1].strip(): ln for ln in out.splitlines()[2:]}
    assert rows["yamnet-a"].endswith("| yes |") and rows["yamnet-b"].endswith("| **no** |")
    assert rows["hubert-c"].endswith("| yes |") and "other" not in rows


# -- bench.compare and the latency file --------------------------------------------------------------

def test_interleaved_run_pools_every_round_and_merges_beside_the_sweep(tmp_path):
    a, b = FakeModel(model_id="fake-a"), FakeModel(model_id="fake-b", delay_s=0.002)
    variants = [compare.Variant(a), compare.Variant(b), compare.Variant(a, blas=1)]
    run = compare.run_name(["fake-a", "fake-b"], 1, ["default", 1])
    recs = compare.interleaved(variants, seconds=4, threads=1, rounds=3, command="c", run=run)
    assert [r["config"] for r in recs] == ["fake-a", "fake-b", "fake-a, BLAS 1 thread(s)"]
    assert [r["blas_threads"] for r in recs] == ["default", "default", 1]
    for r in recs:
        assert r["rounds"] == 3 and len(r["round_p50_ms"]) == 3
        assert r["n_windows"] == 9 == len(r["latencies_ms"])  # 3 windows of 4 s per round
        assert r["run"] == ("interleaved in one process, 1 thread(s): fake-a vs fake-b; "
                            "numpy BLAS threads: default, 1")
        assert set(benchmark.RECORD_KEYS) <= set(r)
    assert recs[1]["p50_ms"] > recs[0]["p50_ms"]  # the 2 ms model is slower in the same run
    out = tmp_path / "lat.json"
    sweep = _latency_record("fake-a", 1.0, [0.1, 0.1], latencies_ms=[1.0])
    latency.write([sweep], out)
    latency.write(recs, out, merge=True)
    latency.write([dict(recs[0], latencies_ms=[2.0])], out, merge=True)  # the same run again replaces it
    kept = json.loads(out.read_text())
    assert [(r["config"], r.get("run") is not None) for r in kept] == [
        ("fake-a", False), ("fake-b", True), ("fake-a, BLAS 1 thread(s)", True), ("fake-a", True)]
    samples = json.loads((tmp_path / "lat_windows.json").read_text())
    assert len(samples) == 4 and samples[f"fake-a|1|{run}"] == [2.0] and samples["fake-a|1"] == [1.0]


def test_a_blas_variant_limits_numpys_pool_only_inside_its_block():
    threadpoolctl = pytest.importorskip("threadpoolctl")

    def blas_threads():
        return [p["num_threads"] for p in threadpoolctl.threadpool_info() if p["user_api"] == "blas"]

    before = blas_threads()
    if not before:
        pytest.skip("numpy has no BLAS thread pool here")
    with compare.Variant(FakeModel(), blas=1).limits():
        assert set(blas_threads()) == {1}
    with compare.Variant(FakeModel()).limits():
        assert blas_threads() == before
    assert blas_threads() == before


def test_blas_threads_option_values():
    assert compare.parse_blas(()) == [None]
    assert compare.parse_blas(("default", "1", "2")) == [None, 1, 2]
    for bad in ("0", "two"):
        with pytest.raises(click.BadParameter):
            compare.parse_blas((bad,))


def test_compare_command_line_is_canonical_and_names_blas_threads(monkeypatch):
    for k in compare.THREAD_ENV:
        monkeypatch.delenv(k, raising=False)
    assert compare.canonical_command(["a", "b"], 60.0, 1, 10, 200) == (
        "python3 -m bench.compare --model a --model b --seconds 60 --threads 1 --rounds 10 --repeat 200")
    assert compare.canonical_command(["a"], 5.0, 1, 1, 3, ["default", 1]).endswith(
        "--repeat 3 --blas-threads default --blas-threads 1")
    assert compare.run_name(["a", "b"], 1, ["default"]) == "interleaved in one process, 1 thread(s): a vs b"
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "1")
    assert compare.canonical_command(["a"], 5.0, 1, 1, 3).startswith("OPENBLAS_NUM_THREADS=1 python3 -m")
    assert compare.run_name(["a", "b"], 1).endswith(", OPENBLAS_NUM_THREADS=1")


def test_stream_eval_merge_keeps_the_models_not_rerun(tmp_path):
    path = tmp_path / "stream.json"
    path.write_text(json.dumps([{"model": "a", "x": 1}, {"model": "b", "x": 1}]))
    new = [{"model": "b", "x": 2}]
    assert stream_eval.merged(path, new) == [{"model": "a", "x": 1}, {"model": "b", "x": 2}]


# -- python -m bench ------------------------------------------------------------------------------------

@pytest.fixture
def no_subprocess(monkeypatch, tmp_path):
    """Steps recorded instead of run, over results that hold one plain and one BLAS-limited run."""
    run = "interleaved in one process, 1 thread(s): a vs b"
    cmd = "python3 -m bench.compare --model a --model b --seconds 60 --threads 1 --rounds 2 --repeat 5"
    (tmp_path / "latency.json").write_text(json.dumps([
        _latency_record("a", 5.0, [0.1, 0.1]),
        _latency_record("a", 5.0, [0.1, 0.1], run=run, command=cmd),
        _latency_record("b", 3.0, [0.1, 0.1], run=run, command=cmd),
        _latency_record("a", 5.0, [0.1, 0.1], run=run + ", OPENBLAS_NUM_THREADS=1",
                        command="OPENBLAS_NUM_THREADS=1 " + cmd)]))
    (tmp_path / "stream.json").write_text(json.dumps([{"model": "a"}, {"model": "b"}]))
    monkeypatch.setattr(bench_cli, "RESULTS", tmp_path)
    calls = []

    class Done:
        returncode = 0

    monkeypatch.setattr(bench_cli.subprocess, "run", lambda argv, **kw: calls.append((argv, kw)) or Done())
    return calls


def test_bench_all_dry_run_prints_every_step_and_runs_nothing(monkeypatch, no_subprocess):
    monkeypatch.setattr(bench_cli, "load_now", lambda: (0.2, 2))
    result = CliRunner().invoke(bench_cli.cli, ["all", "--dry-run"])
    assert result.exit_code == 0, result.output
    out = result.output
    for module in ("bench.latency", "bench.compare", "bench.footprint", "bench.stream_eval", "bench.soak",
                   "bench.plots", "bench.tables"):
        assert f"python3 -m {module}" in out, module
    assert "OPENBLAS_NUM_THREADS=1 python3 -m bench.compare" in out  # the run's own environment
    assert out.index("bench.latency") < out.index("bench.compare") < out.index("bench.tables")
    assert "idle enough" in out and no_subprocess == []


def test_bench_all_refuses_a_loaded_machine(monkeypatch, no_subprocess):
    monkeypatch.setattr(bench_cli, "load_now", lambda: (4.5, 2))
    result = CliRunner().invoke(bench_cli.cli, ["all"])
    assert result.exit_code != 0 and "refusing" in result.output and "LOADED" in result.output
    assert no_subprocess == []
    dry = CliRunner().invoke(bench_cli.cli, ["all", "--dry-run"])
    assert dry.exit_code == 0 and "would refuse" in dry.output


def test_bench_all_force_runs_the_steps_in_order(monkeypatch, no_subprocess):
    monkeypatch.setattr(bench_cli, "load_now", lambda: (4.5, 2))
    result = CliRunner().invoke(bench_cli.cli, ["all", "--force", "--skip", "soak"])
    assert result.exit_code == 0, result.output
    modules = [argv[2] for argv, _ in no_subprocess]
    assert modules[0] == "bench.latency" and modules[-1] == "bench.tables" and "bench.soak" not in modules
    bad = CliRunner().invoke(bench_cli.cli, ["all", "--dry-run", "--skip", "sok"])
    assert bad.exit_code == 2 and "no step sok" in bad.output
    blas = [kw["env"].get("OPENBLAS_NUM_THREADS") for argv, kw in no_subprocess if argv[2] == "bench.compare"]
    assert sorted(map(str, blas)) == ["1", "None"]


def test_bench_subcommands_hand_their_arguments_to_the_scripts(monkeypatch):
    got = []
    monkeypatch.setattr(latency, "main", lambda argv: got.append(argv) or 0)
    result = CliRunner().invoke(bench_cli.cli, ["latency", "--configs", "yamnet-dev", "--seconds", "5"])
    assert result.exit_code == 0 and got == [["--configs", "yamnet-dev", "--seconds", "5"]]


def test_provenance_names_machine_dates_load_range_and_version():
    recs = [_latency_record("a", 5.0, [9.1, 9.5]), _latency_record("b", 5.0, [10.2, 9.8], version="0.2.0")]
    line = render_perf.provenance(recs)
    assert "Test CPU, 2 cores" in line and "2026-12-06" in line
    assert "1-minute load 9.1 to 10.2" in line and "edge-ser 0.1.0, 0.2.0" in line
    assert "1-minute load 9.1;" in render_perf.provenance([_latency_record("a", 5.0, [9.1, 9.1])])


def test_footprint_merge_replaces_only_the_models_it_measured(tmp_path, monkeypatch):
    from bench import footprint

    out = tmp_path / "footprint.json"
    out.write_text(json.dumps([{"model": "a", "peak_rss_mb": 1.0}, {"model": "b", "peak_rss_mb": 1.0}]))
    run = {"peak_rss_mb": 2.0, "cpu_pct": 0.5, "published": 1, "inferred": 1}
    monkeypatch.setattr(footprint, "CACHE", tmp_path / "cache")
    monkeypatch.setattr(footprint, "audio_files", lambda seconds: {"silent": "s.wav", "speech": "p.wav"})
    monkeypatch.setattr(footprint, "measure", lambda model, wav, config, settle: dict(run))
    argv = ["--models", "a", "--models", "c", "--no-hubert", "--merge", "--out", str(out)]
    assert footprint.main(argv) == 0
    records = json.loads(out.read_text())
    assert [(r["model"], r["peak_rss_mb"]) for r in records] == [("b", 1.0), ("a", 2.0), ("c", 2.0)]
