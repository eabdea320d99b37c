"""Job spec validation: every bad case names its field and nothing is queued."""

from pathlib import Path

import pytest

from raysched.schedulers.spec import JobSpec, SpecError, load_spec, spec_from_dict

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
GOOD = {"name": "j", "kind": "data_parallel", "model": "mlp", "num_workers": 2,
        "cpus_per_worker": 1, "steps": 10}


def test_good_spec_round_trips():
    spec = spec_from_dict(GOOD)
    assert spec.num_workers == 2 and spec.total_cpus == 2
    assert JobSpec.from_dict(spec.to_dict()) == spec


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.name)
def test_every_example_is_valid(path):
    assert load_spec(path).name


@pytest.mark.parametrize(
    ("change", "field", "fragment"),
    [
        ({"colour": "red"}, "colour", "unknown field"),
        ({"num_workers": "two"}, "num_workers", "expected int"),
        ({"num_workers": 0}, "num_workers", "positive"),
        ({"num_workers": -3}, "num_workers", "positive"),
        ({"num_workers": True}, "num_workers", "expected int"),
        ({"steps": 0}, "steps", "positive"),
        ({"cpus_per_worker": 0}, "cpus_per_worker", "positive"),
        ({"learning_rate": -0.1}, "learning_rate", "positive"),
        ({"kind": "magic"}, "kind", "unknown kind"),
        ({"model": "resnet9000"}, "model", "unknown model"),
        ({"dataset": "imagenet"}, "dataset", "unknown dataset"),
        ({"model": "transformer"}, "dataset", "cannot train"),
        ({"name": "bad name!"}, "name", "characters"),
        ({"options": {"warp_drive": True}}, "options.warp_drive", "unknown option"),
        ({"options": {"hetero_sharding": "yes"}}, "options.hetero_sharding", "expected bool"),
        ({"options": []}, "options", "expected dict"),
        ({"options": {"parallelism": "zero3"}}, "options.parallelism", "not one of ddp, fsdp"),
        ({"options": {"parallelism": True}}, "options.parallelism", "expected str"),
        ({"options": {"parallelism": "fsdp", "compression": "fp16"}}, "options.compression",
         "parallelism 'fsdp'"),
        ({"options": {"parallelism": "fsdp", "compression": "powersgd"}}, "options.compression",
         "DDP communication hooks"),
        ({"kind": "parameter_server", "options": {"parallelism": "fsdp"}}, "options.parallelism",
         "unknown option"),
    ],
)
def test_bad_specs_name_the_field(change, field, fragment):
    with pytest.raises(SpecError) as err:
        spec_from_dict({**GOOD, **change})
    assert err.value.field == field
    assert fragment in str(err.value)
    assert f"'{field}'" in str(err.value)


def test_missing_name():
    with pytest.raises(SpecError, match="'name'"):
        spec_from_dict({"kind": "data_parallel"})


def test_more_cpus_than_any_node():
    with pytest.raises(SpecError) as err:
        spec_from_dict({**GOOD, "cpus_per_worker": 8}, max_node_cpus=2)
    assert err.value.field == "cpus_per_worker"
    assert "largest node has 2" in str(err.value)


def test_yaml_errors(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: [unclosed")
    with pytest.raises(SpecError, match="not valid YAML"):
        load_spec(bad)
    with pytest.raises(SpecError, match="cannot read"):
        load_spec(tmp_path / "missing.yaml")
    listy = tmp_path / "list.yaml"
    listy.write_text("- a\n- b\n")
    with pytest.raises(SpecError, match="expected a mapping"):
        load_spec(listy)


def test_spec_error_survives_pickling():
    import pickle

    err = pickle.loads(pickle.dumps(SpecError("steps", "must be positive")))
    assert err.field == "steps" and str(err) == "invalid job spec: field 'steps': must be positive"


@pytest.mark.parametrize(("options", "field"), [
    ({"compression": "zip"}, "options.compression"),
    ({"fsdp": True}, "options.fsdp"),
    ({"max_failures": -1}, "options.max_failures"),
    ({"max_failures": "2"}, "options.max_failures"),
])
def test_option_values_are_checked(options, field):
    with pytest.raises(SpecError) as err:
        spec_from_dict({**GOOD, "options": options})
    assert err.value.field == field


@pytest.mark.parametrize("options", [
    {"parallelism": "fsdp"},
    {"parallelism": "fsdp", "hetero_sharding": True, "compression": "none"},
    {"parallelism": "ddp", "compression": "powersgd"},
    {"max_failures": 0},
])
def test_data_parallel_strategies(options):
    assert spec_from_dict({**GOOD, "options": options}).options == options
