"""The sweep config checks that run on the controller before any host is touched."""

from __future__ import annotations

import pytest
from ansible_collections.sweep_fleet.wandb.plugins.module_utils.sweep_config import (
    canonical,
    fill_distributions,
    sweep_config_problems,
)

from standin.server import validate_sweep_config

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
        "run_cap": 10,
        "parameters": {
            "lr": {"distribution": "log_uniform_values", "min": 0.0001, "max": 0.1},
            "opt": {"values": ["adam", "sgd"], "probabilities": [0.7, 0.3]},
        },
    },
]


@pytest.mark.parametrize("config", GOOD)
def test_good_configs_pass_ours_and_wandbs_schema(config):
    assert sweep_config_problems(config) == []
    assert validate_sweep_config(config) == []


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"method": "grdi"}, "method must be one of grid, random, bayes (got 'grdi')"),
        ({"program": None}, "program is required"),
        ({"parameters": {}}, "parameters must be a non-empty mapping"),
        ({"parameters": {"x": [1, 2]}}, "parameters.x must be a mapping"),
        ({"parameters": {"x": {"values": []}}}, "parameters.x.values must be a non-empty list"),
        ({"parameters": {"x": {"vals": [1]}}}, "parameters.x has unknown keys vals"),
        ({"parameters": {"x": {"min": 3, "max": 1}}}, "parameters.x.min must be below max"),
        ({"parameters": {"x": {"min": 0.1, "max": 1.0}}}, "method grid needs values"),
        (
            {"parameters": {"x": {"distribution": "gauss", "values": [1]}}},
            "parameters.x.distribution must be",
        ),
        ({"metric": {"goal": "up", "name": "loss"}}, "metric.goal must be one of minimize, maximize"),
        ({"metric": {"goal": "maximize"}}, "metric.name is required"),
        ({"method": "bayes", "metric": None}, "method bayes needs a metric"),
        ({"command": "python main.py"}, "command must be a non-empty list of strings"),
        ({"early_terminate": {"type": "median"}}, "early_terminate.type must be hyperband"),
        ({"run_cap": 0}, "run_cap must be a positive integer"),
        ({"paramters": {}}, "unknown top-level keys paramters"),
    ],
)
def test_bad_configs_say_what_is_wrong(change, message):
    config = {**GOOD[0], **change}
    config = {k: v for k, v in config.items() if v is not None}
    problems = sweep_config_problems(config)
    assert any(message in p for p in problems), problems


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
