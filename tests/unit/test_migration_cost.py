"""The controller's measured migration cost: past migrations first, else launches' start-up."""

from __future__ import annotations

from raysched.platform.migration_cost import measured_migration_cost


def test_measured_migrations_win_over_start_ups():
    assert measured_migration_cost([90.0, 30.0, 60.0], [200.0]) == 60.0


def test_before_any_migration_a_launch_start_up_is_the_cost():
    assert measured_migration_cost([], [45.0, 180.0, 60.0]) == 60.0


def test_nothing_measured_leaves_it_to_the_policy():
    assert measured_migration_cost([], []) is None
