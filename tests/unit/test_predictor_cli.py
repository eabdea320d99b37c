"""Tests for `python -m raysched.model_cmd`: train, evaluate and explain on a small store."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from raysched import model_cmd
from raysched.platform.telemetry import TelemetryStore
from raysched.schedulers.predictor.synthetic import synthetic_jobs
from tests.unit.test_predictor_registry import put


@pytest.fixture(scope="module")
def store_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "telemetry.db"
    store = TelemetryStore(path)
    put(store, synthetic_jobs(60, seed=9))
    store.close()
    return path


def test_add_parser_registers_model(store_path: Path) -> None:
    parser = argparse.ArgumentParser()
    model_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["model", "--store", str(store_path), "explain", "x"])
    assert args.model_action == "explain" and args.job_id == "x"


def test_train_evaluate_explain(store_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert model_cmd.main(["--store", str(store_path), "train"]) == 0
    out = capsys.readouterr().out
    assert "version 1" in out and "promoted" in out
    assert model_cmd.main(["--store", str(store_path), "evaluate"]) == 0
    out = capsys.readouterr().out
    for name in ("cost_model", "global_median", "per_kind_median", "last_user_model",
                 "spearman", "interval_coverage"):
        assert name in out
    assert model_cmd.main(["--store", str(store_path), "explain", "syn-9-000042"]) == 0
    out = capsys.readouterr().out
    assert "top features" in out and "source: model" in out


def test_errors_are_reported(tmp_path: Path, store_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert model_cmd.main(["--store", str(tmp_path / "none.db"), "train"]) == 2
    assert "no telemetry store" in capsys.readouterr().err
    assert model_cmd.main(["--store", str(store_path), "explain", "nope"]) == 2
    assert "unknown job" in capsys.readouterr().err


def test_default_store_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYSCHED_STORE", "/x/y.db")
    assert model_cmd.default_store() == "/x/y.db"
    monkeypatch.delenv("RAYSCHED_STORE")
    assert model_cmd.default_store() == ".raysched/telemetry.db"
