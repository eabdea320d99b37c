"""The `ray up` configs pass Ray's own validator and install and start raysched."""

import copy
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", ["cluster.yaml", "cluster.local.yaml"])
def test_cluster_config_is_valid_for_ray_up(name):
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / name).read_text())
    config = prepare_config(copy.deepcopy(raw))
    validate_config(config)
    setup = " ".join(config["setup_commands"])
    assert "constraints.txt" in setup and "raysched" in setup
    head = " ".join(config["head_start_ray_commands"])
    assert "raysched.platform.serve" in head
    assert config["file_mounts"]["~/raysched"] == "."


def test_validator_rejects_a_broken_config():
    from ray.autoscaler._private.util import prepare_config, validate_config

    raw = yaml.safe_load((ROOT / "cluster.yaml").read_text())
    raw["available_node_types"]["head"]["not_a_field"] = 1
    with pytest.raises(Exception):  # noqa: B017 - Ray raises jsonschema's ValidationError
        validate_config(prepare_config(raw))
