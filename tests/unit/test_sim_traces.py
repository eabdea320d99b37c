"""Trace and cluster loaders of the simulator: formats, windows, and clear errors on bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from raysched.schedulers.simulator import ClusterSpecError, TraceError, load_cluster, load_trace
from raysched.schedulers.simulator.traces import parse_time, synthetic_trace

PHILLY = Path("/work/shared/traces/philly")
if not PHILLY.exists():  # the repo's sibling `shared/` checkout
    PHILLY = Path(__file__).resolve().parents[3] / "shared" / "traces" / "philly"

HEADER = "timestamp,duration,num_gpus,gpu_time,cluster\n"


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_philly_rows_and_time_window(tmp_path):
    p = write(tmp_path, HEADER + "2017-10-01 00:00:10,100.0,1,100.0,vcA\n"
              "2017-10-07 23:59:59,50.0,8,400.0,vcB\n2017-10-08 00:00:00,5.0,1,5.0,vcA\n")
    tr = load_trace(p, "philly", start=parse_time("2017-10-01"),
                    end=parse_time("2017-10-07", end_of_day=True))
    assert [(j.duration_s, j.gpus, j.vc) for j in tr.jobs] == [(100.0, 1, "vcA"), (50.0, 8, "vcB")]
    assert tr.jobs[0].submit_s == parse_time("2017-10-01 00:00:10")
    assert tr.skipped == {"outside the time window": 1}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("2017-10-01 00:00:00,-3.0,1,0,vc\n", r"row 1 \(line 2\): duration is negative \(-3.0\)"),
        ("2017-10-01 00:00:00,abc,1,0,vc\n", r"row 1 \(line 2\): duration is not a number"),
        ("2017-10-01 00:00:00,5,two,0,vc\n", r"row 1 \(line 2\): num_gpus is not a number"),
        ("2017-10-01 00:00:00,5,1.5,0,vc\n", r"row 1 \(line 2\): num_gpus must be a whole"),
        ("yesterday,5,1,0,vc\n", r"row 1 \(line 2\): timestamp is not a date-time"),
        ("2017-10-01 00:00:00,5,1\n", r"row 1 \(line 2\): expected 5 fields, got 3"),
        ("2017-10-01 00:00:00,nan,1,0,vc\n", r"row 1 \(line 2\): duration is not a finite"),
    ],
)
def test_philly_malformed_rows_name_the_row(tmp_path, body, message):
    p = write(tmp_path, HEADER + body)
    with pytest.raises(TraceError, match=message):
        load_trace(p, "philly")


def test_error_names_the_right_row_deep_in_the_file(tmp_path):
    rows = "".join(f"2017-10-01 00:00:{i:02d},10,1,10,vc\n" for i in range(16))
    p = write(tmp_path, HEADER + rows + "2017-10-01 00:01:00,-3.0,1,0,vc\n")
    with pytest.raises(TraceError, match=r"row 17 \(line 18\): duration is negative \(-3.0\)"):
        load_trace(p, "philly")


def test_unsorted_rows_are_an_error(tmp_path):
    p = write(tmp_path, HEADER + "2017-10-02 00:00:00,1,1,1,vc\n2017-10-01 00:00:00,1,1,1,vc\n")
    with pytest.raises(TraceError, match=r"row 2 \(line 3\): submit time .* is earlier"):
        load_trace(p, "philly")


def test_missing_columns_are_named(tmp_path):
    p = write(tmp_path, "timestamp,num_gpus,cluster\n2017-10-01 00:00:00,1,vc\n")
    with pytest.raises(TraceError, match=r"missing column\(s\) duration"):
        load_trace(p, "philly")
    g = write(tmp_path, "submit_time,duration\n1,2\n", "g.csv")
    with pytest.raises(TraceError, match="gpus or cpus"):
        load_trace(g, "generic")


def test_generic_format_with_iso_and_unix_times_and_features(tmp_path):
    p = write(tmp_path, "job_id,submit_time,duration,gpus,cpus,user,vc,name,feat_team\n"
              "a,100,10,2,,alice,v1,train-a,vision\n"
              "b,2017-10-01T00:00:00,5,,4,bob,v2,,nlp\n", "g.csv")
    a, b = load_trace(p, "generic").jobs
    assert (a.job_id, a.submit_s, a.duration_s, a.gpus, a.cpus) == ("a", 100.0, 10.0, 2, 0.0)
    assert (a.user, a.vc, a.name) == ("alice", "v1", "train-a")
    assert a.features == (("feat_team", "vision"),)
    assert (b.submit_s, b.gpus, b.cpus) == (parse_time("2017-10-01"), 0, 4.0)


def test_generic_bad_cell_names_row_and_column(tmp_path):
    p = write(tmp_path, "submit_time,duration,gpus\n1,2,1\n2,3,1\nsoon,1,1\n", "g.csv")
    with pytest.raises(TraceError, match=r"row 3 \(line 4\): submit_time is neither"):
        load_trace(p, "generic")


def test_telemetry_export_maps_cpus_and_skips_jobs_that_never_ran(tmp_path):
    cols = ("job_id,name,user,kind,model,num_workers,cpus_per_worker,submit_time,start_time,"
            "end_time,run_time_s,queue_time_s,state\n")
    p = write(tmp_path, cols
              + "j2,b,u,data_parallel,mlp,2,1.5,200,210,260,50,10,SUCCEEDED\n"
              + "j1,a,u,sweep,cnn,1,2,100,101,131,,1,FAILED\n"
              + "j3,c,u,data_parallel,mlp,1,1,300,,,,,QUEUED\n", "tel.csv")
    tr = load_trace(p, "telemetry")
    assert [(j.job_id, j.cpus, j.duration_s, j.gpus) for j in tr.jobs] == [
        ("j1", 2.0, 30.0, 0), ("j2", 3.0, 50.0, 0)
    ]
    assert tr.skipped == {"never ran (no run time)": 1}
    assert ("kind", "sweep") in tr.jobs[0].features


def test_telemetry_parquet(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    df = pd.DataFrame({
        "job_id": ["x"], "name": ["n"], "user": ["u"], "kind": ["data_parallel"],
        "model": ["mlp"], "num_workers": [4], "cpus_per_worker": [0.5], "submit_time": [10.0],
        "start_time": [11.0], "end_time": [21.0], "run_time_s": [10.0], "queue_time_s": [1.0],
        "state": ["SUCCEEDED"],
    })
    path = tmp_path / "jobs.parquet"
    df.to_parquet(path)
    (job,) = load_trace(path, "telemetry").jobs
    assert (job.cpus, job.duration_s, job.submit_s) == (2.0, 10.0, 10.0)


def test_unknown_format():
    with pytest.raises(TraceError, match="unknown trace format 'xml'"):
        load_trace("x", "xml")


def test_parse_time_end_of_day():
    assert parse_time("2017-10-07", end_of_day=True) - parse_time("2017-10-07") == 86400
    with pytest.raises(TraceError, match="not a date"):
        parse_time("someday")


@pytest.mark.skipif(not PHILLY.exists(), reason="Philly trace not available")
def test_philly_vc_files_and_the_real_week():
    contended = load_cluster(PHILLY / "philly_vc_contended.csv")
    assert len(contended.nodes) == 72 and contended.resource == "gpu"
    assert contended.capacity("6214e9") == 40
    helios = load_cluster(PHILLY / "philly_vc.csv")
    assert helios.capacity() == 352 * 8
    tr = load_trace(PHILLY / "philly_2017_sep_oct.csv", "philly",
                    start=parse_time("2017-10-01"), end=parse_time("2017-10-07", end_of_day=True))
    assert len(tr) == 10650


def test_cluster_csv_and_yaml_groups(tmp_path):
    p = write(tmp_path, "partition,nodes,gpus_per_node,speed,quota\nA,2,4,1.0,6\nA,1,4,0.5,\n"
              "B,1,8,,\n", "c.csv")
    c = load_cluster(p)
    assert [(n.node_id, n.gpus, n.speed) for n in c.nodes] == [
        ("A-0", 4, 1.0), ("A-1", 4, 1.0), ("A-2", 4, 0.5), ("B-0", 8, 1.0)
    ]
    assert c.quotas == {"A": 6.0}
    y = write(tmp_path, "- {partition: cpu, nodes: 3, gpus_per_node: 0, cpus_per_node: 16}\n",
              "c.yaml")
    cy = load_cluster(y)
    assert cy.resource == "cpu" and cy.capacity() == 48


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("vc,nodes\nA,two\n", r"row 1: nodes is not a number"),
        ("vc\nA\n", r"row 1: missing nodes"),
        ("vc,nodes,speed\nA,1,0\n", r"row 1: speed must be positive"),
        ("vc,nodes\nA,-1\n", r"row 1: nodes must be zero or positive"),
    ],
)
def test_bad_cluster_rows(tmp_path, text, message):
    with pytest.raises(ClusterSpecError, match=message):
        load_cluster(write(tmp_path, text, "c.csv"))


def test_synthetic_trace_is_seeded_and_sorted():
    a, b = synthetic_trace(200, seed=3), synthetic_trace(200, seed=3)
    assert a.jobs == b.jobs
    subs = [j.submit_s for j in a.jobs]
    assert subs == sorted(subs)
