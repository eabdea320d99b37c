"""Injected slowdowns and the oracle's view of true node speeds (files only, no Ray)."""

from __future__ import annotations

import pytest

from raysched.platform import interference
from raysched.platform.interference import TrueSpeeds


def test_true_speeds_follow_injected_slowdowns(tmp_path) -> None:
    directory = str(interference.interference_dir(tmp_path))
    speeds = TrueSpeeds({"a": 1.0, "b": 0.5}, directory, max_age_s=0.0)
    assert dict(speeds) == {"a": 1.0, "b": 0.5}
    interference.slow_down(tmp_path, "a", 4.0)
    assert speeds["a"] == pytest.approx(0.25) and speeds.get("b") == 0.5
    interference.recover(tmp_path, "a")
    assert speeds["a"] == 1.0
    with pytest.raises(ValueError, match=">= 1"):
        interference.slow_down(tmp_path, "a", 0.5)


def test_true_speeds_reread_files_at_most_every_max_age(tmp_path) -> None:
    speeds = TrueSpeeds({"a": 1.0}, str(interference.interference_dir(tmp_path)),
                        max_age_s=3600.0)
    assert speeds["a"] == 1.0
    interference.slow_down(tmp_path, "a", 2.0)
    assert speeds["a"] == 1.0  # cached for an hour
