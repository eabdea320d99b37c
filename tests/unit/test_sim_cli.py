"""The `simulate` subcommand: argument wiring, outputs, and clear errors."""

from __future__ import annotations

import argparse
import json

from raysched import simulate_cmd


def write_inputs(tmp_path):
    trace = tmp_path / "t.csv"
    trace.write_text("job_id,submit_time,duration,gpus\na,0,10,1\nb,1,5,2\nc,2,3,1\n")
    cluster = tmp_path / "c.csv"
    cluster.write_text("partition,nodes,gpus_per_node\ndefault,1,2\n")
    return trace, cluster


def test_add_parser_registers_simulate(tmp_path):
    trace, cluster = write_inputs(tmp_path)
    parser = argparse.ArgumentParser()
    simulate_cmd.add_parser(parser.add_subparsers(dest="cmd"))
    args = parser.parse_args(["simulate", "--trace", str(trace), "--format", "generic",
                              "--cluster", str(cluster), "--policies", "fifo,sjf",
                              "--no-progress"])
    assert args.func is simulate_cmd.run
    assert args.func(args) == 0


def test_run_writes_json_and_plot(tmp_path, capsys):
    trace, cluster = write_inputs(tmp_path)
    out, png = tmp_path / "o.json", tmp_path / "o.png"
    rc = simulate_cmd.main(["--trace", str(trace), "--format", "generic", "--cluster",
                            str(cluster), "--json", str(out), "--plot", str(png),
                            "--no-progress"])
    assert rc == 0
    data = json.loads(out.read_text())
    assert set(data["policies"]) == {"fifo", "sjf", "srtf", "tiresias", "qssf", "learned"}
    assert data["policies"]["fifo"]["avg_jct_s"] == 9.0  # JCTs 10, 14, 3
    assert png.stat().st_size > 0
    assert "fifo" in capsys.readouterr().out


def test_bad_trace_and_policy_give_clear_errors(tmp_path, capsys):
    trace, cluster = write_inputs(tmp_path)
    trace.write_text("job_id,submit_time,duration,gpus\na,0,-3,1\n")
    rc = simulate_cmd.main(["--trace", str(trace), "--format", "generic", "--cluster",
                            str(cluster), "--no-progress"])
    assert rc == 2
    assert "row 1 (line 2): duration is negative (-3.0)" in capsys.readouterr().err
    rc = simulate_cmd.main(["--trace", str(trace), "--format", "generic", "--cluster",
                            str(cluster), "--policies", "fifo,lottery", "--no-progress"])
    assert rc == 2
    assert "unknown policy lottery" in capsys.readouterr().err
