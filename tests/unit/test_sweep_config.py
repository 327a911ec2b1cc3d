"""The sweep config checks that run on the controller before any host is touched."""

from __future__ import annotations

import warnings

import pytest
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.sweep_config import (
    INTENDED_DIFFERENCES,
    canonical,
    fill_distributions,
    grid_size,
    sweep_config_problems,
)

with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    from sweeps import schema_violations_from_proposed_config

GOOD = [
    {"program": "main.py", "method": "grid", "parameters": {"data_path": {"values": ["a.csv", "b.csv"]}}},
    {
        "program": "train/train_mpe.py",
        "method": "grid",
        "command": ["${env}", "python3", "${program}", "--recurrent_policy", "${args}"],
        "metric": {"goal": "maximize", "name": "average_episode_rewards"},
        "parameters": {
            "env_name": {"distribution": "constant", "value": "MPE"},
            "lr": {"distribution": "categorical", "values": [0.01, 0.001]},
            "ppo_epoch": {"distribution": "categorical", "values": [10, 25]},
        },
    },
    {
        "program": "m.py",
        "method": "bayes",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {
            "lr": {"min": 0.0001, "max": 0.1},
            "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
        },
        "early_terminate": {"type": "hyperband", "min_iter": 3},
    },
    {
        "program": "m.py",
        "method": "random",
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.1},
            "opt": {"values": ["adam", "sgd"], "probabilities": [0.7, 0.3]},
            "layers": {"distribution": "q_uniform", "min": 1, "max": 9, "q": 2},
            "wd": {"distribution": "normal", "mu": 0, "sigma": 1},
            "nested": {"parameters": {"a": {"value": 1}, "b": {"values": [1, 2]}}},
        },
    },
]


@pytest.mark.parametrize("config", GOOD)
def test_good_configs_pass_ours_and_wandbs_schema(config):
    assert sweep_config_problems(config) == []
    assert schema_violations_from_proposed_config(config) == []


BASE = GOOD[0]


def changed(**change):
    config = {**BASE, **change}
    return {k: v for k, v in config.items() if v is not None}


def param(spec, method="random"):
    return changed(method=method, parameters={"x": spec})


# (config, a part of our message, the INTENDED_DIFFERENCES key when W&B's schema accepts it)
BAD = [
    (changed(method="grdi"), "method must be one of grid, random, bayes (got 'grdi')", None),
    (changed(method="custom"), "method must be one of", "method custom"),
    (changed(program=None), "program is required", "program"),
    (changed(parameters={}), "parameters must be a non-empty mapping", None),
    (changed(parameters={"x": [1, 2]}), "parameters.x must be a mapping", None),
    (changed(parameters={"x": {"values": []}}), "parameters.x.values must be a non-empty list", None),
    (changed(parameters={"x": {"vals": [1]}}), "parameters.x needs values, value, or min and max", None),
    (param({"min": 3, "max": 1}), "parameters.x.min must be below max", None),
    (changed(parameters={"x": {"min": 0.1, "max": 1.0}}), "method grid needs values", "grid continuous"),
    (param({"distribution": "gauss", "values": [1]}), "parameters.x.distribution must be", None),
    (
        param({"distribution": "int_uniform", "min": 0.5, "max": 3}),
        "must be a whole number for int_uniform",
        None,
    ),
    (param({"value": 1, "values": [1, 2]}), "has both value and values", None),
    (param({"values": [1, 2], "min": 0}), "a list of values cannot also have min or max", None),
    (param({"distribution": "categorical", "value": 1}), "categorical takes values, not value", None),
    (
        param({"values": [1, 2], "probabilities": [1.5, -0.5]}),
        "probabilities must be numbers of at least 0",
        None,
    ),
    (param({"values": [1, 2], "probabilities": [0.5]}), "one probability per value", None),
    (param({"values": [1, 2], "probabilities": [0.5, 0.6]}), "must add up to 1", None),
    (param({"distribution": "log_uniform", "min": -5, "max": 0}), "deprecated by W&B", None),
    (param({"distribution": "log_uniform_values", "min": 0, "max": 1}), "must be a number above 0", None),
    (param({"distribution": "normal", "sigma": -1}), "sigma must be a number of at least 0", None),
    (param({"distribution": "q_uniform", "min": 0, "max": 9, "q": 0}), "q must be a number above 0", None),
    (changed(parameters={"9lives": {"value": 1}}), "W&B refuses this parameter name", None),
    (changed(parameters={"a b": {"value": 1}}), "W&B refuses this parameter name", None),
    (changed(metric={"goal": "up", "name": "loss"}), "metric.goal must be one of minimize, maximize", None),
    (changed(metric={"goal": "maximize"}), "metric.name is required", None),
    (changed(metric={"name": "loss", "higher": True}), "metric has unknown keys higher", None),
    (
        changed(method="bayes", metric=None, parameters={"x": {"values": [1]}}),
        "method bayes needs",
        "bayes metric",
    ),
    (changed(command="python main.py"), "command must be a non-empty list of strings", None),
    (changed(command=["python", 3]), "command must be a non-empty list of strings", "command shape"),
    (changed(early_terminate={"type": "median"}), "early_terminate.type must be hyperband", None),
    (changed(early_terminate={"type": "hyperband", "min_iter": 3, "eta2": 3}), "unknown keys eta2", None),
    (changed(early_terminate={"type": "hyperband"}), "needs min_iter, or max_iter and s", None),
    (changed(run_cap=0), "run_cap must be a positive whole number", None),
    (changed(paramters={}), "unknown top-level keys paramters", None),
    (changed(name=5), "name must be a string", None),
]


@pytest.mark.parametrize(("config", "message", "difference"), BAD, ids=[m for _, m, _ in BAD])
def test_bad_configs_say_what_is_wrong(config, message, difference):
    problems = sweep_config_problems(config)
    assert any(message in p for p in problems), problems


# Valid configs that W&B's schema (sweeps 0.2) refuses only because it predates them.
NEWER = [
    (changed(run_cap=10), "run_cap"),
    (changed(job="team/project/job:v1"), "job/image_uri"),
]


@pytest.mark.parametrize(("config", "difference"), NEWER)
def test_newer_keys_pass_ours(config, difference):
    assert sweep_config_problems(config) == []
    assert schema_violations_from_proposed_config(config), "the sweeps schema predates it"


def test_differential_against_wandbs_schema():
    """On one corpus, our verdict equals W&B's, except for the listed, intended differences."""
    corpus = [(c, None) for c in GOOD] + [(c, d) for c, _, d in BAD] + NEWER
    surprises = []
    for config, difference in corpus:
        ours = not sweep_config_problems(config)
        try:
            theirs = not schema_violations_from_proposed_config(config)
        except ValueError:  # the schema gives up on a parameter that is not a mapping
            theirs = False
        if ours != theirs and difference is None:
            surprises.append((config, ours, theirs))
        if difference is not None:
            assert difference in INTENDED_DIFFERENCES
            assert ours != theirs, f"{difference}: the difference is gone, remove it from the list"
    assert surprises == []


def test_every_intended_difference_has_a_case():
    covered = {d for _, _, d in BAD if d} | {d for _, d in NEWER}
    assert covered == set(INTENDED_DIFFERENCES)


def test_fill_and_canonical_form():
    config = {
        "program": "m.py",
        "method": "random",
        "parameters": {"a": {"min": 1, "max": 5}, "b": {"min": 0.1, "max": 0.5}},
    }
    filled = fill_distributions(config)
    assert filled["parameters"]["a"]["distribution"] == "int_uniform"
    assert filled["parameters"]["b"]["distribution"] == "uniform"
    assert "distribution" not in config["parameters"]["a"], "the input is not modified"
    assert canonical(config) == canonical(filled)
    assert canonical(config) != canonical({**config, "name": "x"})


@pytest.mark.parametrize(
    ("parameters", "size"),
    [
        ({"a": {"values": [1, 2, 3]}, "b": {"value": 1}}, 3),
        ({"a": {"values": [1, 2]}, "b": {"min": 1, "max": 4}}, 8),
        ({"a": {"distribution": "q_uniform", "min": 0, "max": 1, "q": 0.25}}, 4),
        ({"a": {"values": [1, 1, 2]}}, 2),
    ],
)
def test_grid_size_is_what_wandbs_grid_enumerates(parameters, size):
    from sweeps import next_run

    config = {"method": "grid", "parameters": parameters}
    assert grid_size(config) == size
    runs, seen = [], []
    while (suggestion := next_run(config, runs)) is not None:
        import sweeps

        seen.append(suggestion.config)
        runs.append(sweeps.SweepRun(name=str(len(runs)), state="finished", config=suggestion.config))
    assert len(seen) == size
