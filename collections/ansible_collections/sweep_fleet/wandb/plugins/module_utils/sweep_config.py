# Copyright: sweep-fleet developers
# Apache License 2.0
"""Check a W&B sweep config and bring it to the form W&B stores.

The checks follow W&B's sweep config schema (the ``sweeps`` package) and say which
field is wrong and how, e.g. ``method must be one of grid, random, bayes (got 'grdi')``.
"""

from __future__ import annotations

import copy
import json

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
DISTRIBUTIONS = (
    "constant",
    "categorical",
    "int_uniform",
    "uniform",
    "q_uniform",
    "log_uniform",
    "log_uniform_values",
    "q_log_uniform",
    "q_log_uniform_values",
    "inv_log_uniform",
    "inv_log_uniform_values",
    "normal",
    "q_normal",
    "log_normal",
    "q_log_normal",
    "beta",
    "q_beta",
)
GRID_DISTRIBUTIONS = ("constant", "categorical", "int_uniform", "q_uniform")
TOP_LEVEL = (
    "program",
    "method",
    "metric",
    "parameters",
    "command",
    "name",
    "description",
    "project",
    "entity",
    "early_terminate",
    "run_cap",
    "controller",
    "job",
    "image_uri",
)
PARAM_KEYS = (
    "value",
    "values",
    "distribution",
    "min",
    "max",
    "mu",
    "sigma",
    "q",
    "a",
    "b",
    "probabilities",
    "parameters",
)
COMMAND_MACROS = (
    "${env}",
    "${interpreter}",
    "${program}",
    "${args}",
    "${args_no_hyphens}",
    "${args_no_boolean_flags}",
    "${args_json}",
    "${args_json_file}",
    "${project}",
    "${entity}",
)


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _parameter_problems(name: str, spec, method: str) -> list[str]:
    where = f"parameters.{name}"
    if not isinstance(spec, dict):
        return [f"{where} must be a mapping such as {{values: [...]}} or {{value: x}} (got {spec!r})"]
    problems = []
    unknown = sorted(set(spec) - set(PARAM_KEYS))
    if unknown:
        problems.append(f"{where} has unknown keys {', '.join(unknown)} (allowed: {', '.join(PARAM_KEYS)})")
    if "parameters" in spec:  # nested parameters
        nested = spec["parameters"]
        if not isinstance(nested, dict) or not nested:
            return [*problems, f"{where}.parameters must be a non-empty mapping"]
        for child, child_spec in nested.items():
            problems += _parameter_problems(f"{name}.{child}", child_spec, method)
        return problems
    dist = spec.get("distribution")
    if dist is not None and dist not in DISTRIBUTIONS:
        problems.append(f"{where}.distribution must be one of {', '.join(DISTRIBUTIONS)} (got {dist!r})")
        return problems
    if "values" in spec:
        if not isinstance(spec["values"], list) or not spec["values"]:
            problems.append(f"{where}.values must be a non-empty list (got {spec['values']!r})")
        if "probabilities" in spec:
            probs = spec["probabilities"]
            if method == "grid":
                problems.append(f"{where}.probabilities cannot be used with method grid")
            elif not isinstance(probs, list) or len(probs) != len(spec.get("values") or []):
                problems.append(f"{where}.probabilities must list one probability per value")
            elif abs(sum(probs) - 1.0) > 1e-6:
                problems.append(f"{where}.probabilities must add up to 1 (they add up to {sum(probs)})")
    elif "value" in spec:
        pass
    elif "min" in spec or "max" in spec:
        if not ("min" in spec and "max" in spec):
            problems.append(f"{where} needs both min and max")
        elif not (_number(spec["min"]) and _number(spec["max"])):
            problems.append(f"{where}.min and max must be numbers (got {spec['min']!r}, {spec['max']!r})")
        elif spec["min"] >= spec["max"]:
            problems.append(f"{where}.min must be below max (got min {spec['min']}, max {spec['max']})")
        elif dist is None and type(spec["min"]) is not type(spec["max"]):
            problems.append(
                f"{where}: min and max must both be ints (int_uniform) or both floats (uniform), "
                f"or give a distribution (got {spec['min']!r} and {spec['max']!r})"
            )
    elif dist in ("normal", "q_normal", "log_normal", "q_log_normal", "beta", "q_beta"):
        pass
    else:
        problems.append(f"{where} needs values, value, or min and max (got {sorted(spec)})")
    if method == "grid":
        kind = dist or ("categorical" if "values" in spec else "constant" if "value" in spec else None)
        if kind is None and "min" in spec:
            kind = "int_uniform" if isinstance(spec.get("min"), int) else "uniform"
        if kind not in GRID_DISTRIBUTIONS:
            problems.append(
                f"{where}: method grid needs values, a value, or an int_uniform/q_uniform range (got {kind})"
            )
    return problems


def sweep_config_problems(config) -> list[str]:
    """Everything wrong with ``config``, one message per problem (empty when valid)."""
    if not isinstance(config, dict):
        return [f"the sweep config must be a mapping (got {type(config).__name__})"]
    problems = []
    unknown = sorted(set(config) - set(TOP_LEVEL))
    if unknown:
        problems.append(f"unknown top-level keys {', '.join(unknown)} (allowed: {', '.join(TOP_LEVEL)})")
    method = config.get("method")
    if method not in METHODS:
        problems.append(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    if not config.get("program") and not config.get("command"):
        problems.append("program is required (the script to run), unless a command is given")
    if "program" in config and config["program"] is not None and not isinstance(config["program"], str):
        problems.append(f"program must be a path such as train.py (got {config['program']!r})")
    command = config.get("command")
    if command is not None:
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            problems.append(f"command must be a non-empty list of strings (got {command!r})")
        elif "${program}" in command and not config.get("program"):
            problems.append("command uses ${program} but no program is given")
    metric = config.get("metric")
    if metric is not None:
        if not isinstance(metric, dict):
            problems.append(f"metric must be a mapping with name and goal (got {metric!r})")
        else:
            if not metric.get("name") or not isinstance(metric.get("name"), str):
                problems.append("metric.name is required (the logged value to optimise)")
            if "goal" in metric and metric["goal"] not in GOALS:
                problems.append(f"metric.goal must be one of {', '.join(GOALS)} (got {metric['goal']!r})")
    if method == "bayes" and not (isinstance(metric, dict) and metric.get("name")):
        problems.append("method bayes needs a metric with a name and a goal")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        problems.append("parameters must be a non-empty mapping of parameter name to its values")
    else:
        for name, spec in parameters.items():
            problems += _parameter_problems(str(name), spec, method)
    early = config.get("early_terminate")
    if early is not None:
        if not isinstance(early, dict) or early.get("type") != "hyperband":
            problems.append(f"early_terminate.type must be hyperband (got {early!r})")
        elif not any(k in early for k in ("min_iter", "max_iter")):
            problems.append("early_terminate needs min_iter or max_iter")
    run_cap = config.get("run_cap")
    if run_cap is not None and (not isinstance(run_cap, int) or isinstance(run_cap, bool) or run_cap < 1):
        problems.append(f"run_cap must be a positive integer (got {run_cap!r})")
    return problems


def fill_distributions(config: dict) -> dict:
    """What the wandb client does before sending: min/max without distribution get one."""
    config = copy.deepcopy(config)
    for spec in (config.get("parameters") or {}).values():
        if isinstance(spec, dict) and "min" in spec and "max" in spec and "distribution" not in spec:
            if isinstance(spec["min"], int) and isinstance(spec["max"], int):
                spec["distribution"] = "int_uniform"
            elif isinstance(spec["min"], float) and isinstance(spec["max"], float):
                spec["distribution"] = "uniform"
    return config


def canonical(config: dict) -> str:
    """A stable text form: two configs are the same sweep when these are equal."""
    return json.dumps(fill_distributions(config), sort_keys=True, separators=(",", ":"), default=str)
