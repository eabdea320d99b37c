"""The local cluster's node list: `CPUS[:SPEED[:GPUS]]` text, GPU nodes, clear errors."""

from __future__ import annotations

import pytest

from raysched.cli import main as cli_main
from raysched.platform.local_cluster import NodeSpec, format_nodes, parse_nodes


def test_nodes_parse_with_optional_speed_and_gpus() -> None:
    assert parse_nodes("2, 4:0.5, 4:1:1") == (
        NodeSpec(cpus=2), NodeSpec(cpus=4, speed=0.5), NodeSpec(cpus=4, speed=1.0, gpus=1))


def test_formatted_nodes_parse_back_to_the_same_nodes() -> None:
    nodes = (NodeSpec(cpus=2, speed=0.25), NodeSpec(cpus=4, gpus=2), NodeSpec(cpus=1, speed=0.75))
    assert format_nodes(nodes) == "2:0.25,4:1:2,1:0.75"
    assert parse_nodes(format_nodes(nodes)) == nodes


@pytest.mark.parametrize(("text", "why"), [
    ("2:1:1:1", "4 fields"),
    ("x", "invalid literal"),
    ("2:1:-1", "cannot be negative"),
    ("0:1", "at least one CPU"),
    ("2:1.5", "speed must be in"),
    ("2:1:0.5", "invalid literal"),
])
def test_bad_nodes_name_the_part_and_the_format(text: str, why: str) -> None:
    with pytest.raises(ValueError, match="expected CPUS") as err:
        parse_nodes(f"1:1,{text}")
    assert repr(text) in str(err.value) and why in str(err.value)


def test_cluster_up_refuses_a_bad_node_spec_before_starting_anything(
        tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli_main(["--state-dir", str(tmp_path), "cluster", "up", "--node-spec", "2:1:x"])
    assert code == 2
    assert "bad node '2:1:x'" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # no state written, no daemon started
