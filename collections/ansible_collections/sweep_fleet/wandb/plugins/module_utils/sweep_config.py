# Copyright: sweep-fleet developers
# Apache License 2.0
"""Check a W&B sweep config and bring it to the form W&B stores.

The checks follow W&B's sweep config schema (the ``sweeps`` package's ``schema.json``,
which the W&B server applies) and say which field is wrong and how, e.g. ``method must be
one of grid, random, bayes (got 'grdi')``. Where they are stricter than that schema, the
difference is deliberate and listed in ``INTENDED_DIFFERENCES`` (a test compares both).
"""

from __future__ import annotations

import copy
import json
import math
import re

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
IMPUTES = ("latest", "best", "worst")
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
    "apiVersion",
    "kind",
    "job",
    "image_uri",
)
EARLY_TERMINATE_KEYS = ("type", "min_iter", "max_iter", "s", "eta", "strict")
METRIC_KEYS = ("name", "goal", "target", "impute")
# A parameter name as W&B's schema allows it.
PARAMETER_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]*$")
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

# Where this check and W&B's schema (sweeps 0.2) part ways on purpose. The differential
# test (tests/unit/test_sweep_config.py) holds every case of each to its entry here.
INTENDED_DIFFERENCES = {
    "run_cap": "accepted: the W&B service takes run_cap, the sweeps 0.2 schema predates it",
    "job/image_uri": "accepted: newer W&B keys (Launch) that the sweeps 0.2 schema predates",
    "program": "refused without program or command: an agent has nothing to run",
    "method custom": "refused: a custom method needs a W&B Launch scheduler, which agents here lack",
    "grid continuous": "refused: a grid over a continuous range has no values to enumerate",
    "bayes metric": "refused without a metric: bayes has nothing to optimise",
    "command shape": "refused unless a list of strings: the agent would fail every run",
}

# Parameter kinds, as in W&B's schema: the distribution that names the kind, the keys it
# requires, and every key it allows.
_NUMBER = "a number"
_INT = "a whole number"
_POSITIVE = "a number above 0"
_NONNEG = "a number of at least 0"
KINDS: dict[str, dict] = {
    "constant": {"required": ("value",), "keys": {"value": None}},
    "categorical": {"required": ("values",), "keys": {"values": "list"}},
    "categorical_w_probabilities": {
        "required": ("values", "probabilities"),
        "keys": {"values": "list", "probabilities": "list"},
    },
    "int_uniform": {"required": ("min", "max"), "keys": {"min": _INT, "max": _INT}},
    "uniform": {"required": ("min", "max"), "keys": {"min": _NUMBER, "max": _NUMBER}},
    "q_uniform": {"required": ("min", "max"), "keys": {"min": _NUMBER, "max": _NUMBER, "q": _POSITIVE}},
    "log_uniform_values": {"required": ("min", "max"), "keys": {"min": _POSITIVE, "max": _NUMBER}},
    "q_log_uniform_values": {
        "required": ("min", "max"),
        "keys": {"min": _POSITIVE, "max": _NUMBER, "q": _POSITIVE},
    },
    "inv_log_uniform_values": {"required": ("min", "max"), "keys": {"min": _POSITIVE, "max": _NUMBER}},
    "normal": {"required": (), "keys": {"mu": _NUMBER, "sigma": _NONNEG}},
    "q_normal": {"required": (), "keys": {"mu": _NUMBER, "sigma": _NONNEG, "q": _POSITIVE}},
    "log_normal": {"required": (), "keys": {"mu": _NUMBER, "sigma": _NONNEG}},
    "q_log_normal": {"required": (), "keys": {"mu": _NUMBER, "sigma": _NONNEG, "q": _POSITIVE}},
    "beta": {"required": (), "keys": {"a": _NONNEG, "b": _NONNEG}},
    "q_beta": {"required": (), "keys": {"a": _NONNEG, "b": _NONNEG, "q": _POSITIVE}},
}
# Distributions W&B deprecated (its schema reports them), with what replaces them.
DEPRECATED = {
    "log_uniform": "log_uniform_values (min and max are the values, not their logarithms)",
    "q_log_uniform": "q_log_uniform_values",
    "inv_log_uniform": "inv_log_uniform_values",
}
DISTRIBUTIONS = tuple(KINDS)
GRID_KINDS = ("constant", "categorical", "int_uniform", "q_uniform")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _value_problem(where: str, key: str, value, want) -> str | None:
    if want is None:
        return None
    if want == "list":
        if not isinstance(value, list) or not value:
            return f"{where}.{key} must be a non-empty list (got {value!r})"
        return None
    if want == _INT and not _integer(value):
        return f"{where}.{key} must be {want} for int_uniform (got {value!r}); use uniform for decimals"
    if not _number(value):
        return f"{where}.{key} must be {want} (got {value!r})"
    if want == _POSITIVE and value <= 0:
        return f"{where}.{key} must be {want} (got {value!r})"
    if want == _NONNEG and value < 0:
        return f"{where}.{key} must be {want} (got {value!r})"
    return None


def infer_kind(spec: dict) -> str | None:
    """The kind W&B reads a parameter as when it names no distribution."""
    if "distribution" in spec:
        return spec["distribution"]
    if "values" in spec:
        return "categorical_w_probabilities" if "probabilities" in spec else "categorical"
    if "value" in spec:
        return "constant"
    if "min" in spec and "max" in spec:
        if _integer(spec["min"]) and _integer(spec["max"]):
            return "int_uniform"
        return "uniform"
    return None


def _parameter_problems(name: str, spec, method) -> list[str]:
    where = f"parameters.{name}"
    if not PARAMETER_NAME.match(name):
        return [
            f"{where}: W&B refuses this parameter name: start with a letter or _, "
            "then letters, digits, _, . or -"
        ]
    if not isinstance(spec, dict):
        return [f"{where} must be a mapping such as {{values: [...]}} or {{value: x}} (got {spec!r})"]
    if "parameters" in spec:  # nested parameters
        others = sorted(set(spec) - {"parameters"})
        if others:
            return [f"{where} has nested parameters and also {', '.join(others)}: keep only parameters"]
        nested = spec["parameters"]
        if not isinstance(nested, dict) or not nested:
            return [f"{where}.parameters must be a non-empty mapping"]
        problems = []
        for child, child_spec in nested.items():
            problems += _parameter_problems(f"{name}.{child}", child_spec, method)
        return problems
    dist = spec.get("distribution")
    if dist in DEPRECATED:
        return [f"{where}.distribution {dist} is deprecated by W&B: use {DEPRECATED[dist]}"]
    if dist is not None and dist not in KINDS:
        return [f"{where}.distribution must be one of {', '.join(DISTRIBUTIONS)} (got {dist!r})"]
    if "value" in spec and "values" in spec:
        return [f"{where} has both value and values: give value (a constant) or values (a list)"]
    kind = infer_kind(spec)
    if kind is None:
        return [f"{where} needs values, value, or min and max (got {', '.join(sorted(spec)) or 'nothing'})"]
    rule = KINDS[kind]
    problems = []
    unknown = sorted(set(spec) - set(rule["keys"]) - {"distribution"})
    if unknown:
        problems.append(
            f"{where}: {kind} takes {', '.join(rule['keys'])}, not {', '.join(unknown)}"
            + (" (a list of values cannot also have min or max)" if "values" in spec else "")
        )
    missing = [key for key in rule["required"] if key not in spec]
    if missing:
        problems.append(f"{where}: {kind} needs {' and '.join(missing)}")
    for key, want in rule["keys"].items():
        if key in spec:
            problem = _value_problem(where, key, spec[key], want)
            if problem:
                problems.append(problem)
    if problems:
        return problems
    if "min" in spec and "max" in spec and spec["min"] >= spec["max"]:
        problems.append(f"{where}.min must be below max (got min {spec['min']}, max {spec['max']})")
    if kind == "categorical_w_probabilities":
        probs = spec["probabilities"]
        if not all(_number(p) and p >= 0 for p in probs):
            problems.append(f"{where}.probabilities must be numbers of at least 0 (got {probs!r})")
        elif len(probs) != len(spec["values"]):
            problems.append(
                f"{where}.probabilities must list one probability per value "
                f"({len(spec['values'])} values, {len(probs)} probabilities)"
            )
        elif abs(sum(probs) - 1.0) > 1e-6:
            problems.append(f"{where}.probabilities must add up to 1 (they add up to {sum(probs):g})")
        elif method == "grid":
            problems.append(f"{where}.probabilities cannot be used with method grid: remove them")
    if method == "grid" and kind not in GRID_KINDS:
        problems.append(
            f"{where}: method grid needs values, a value, or an int_uniform/q_uniform range "
            f"(got {kind}): list the values, or use method random or bayes"
        )
    return problems


def _early_terminate_problems(early) -> list[str]:
    if not isinstance(early, dict):
        return [f"early_terminate must be a mapping with type: hyperband (got {early!r})"]
    problems = []
    if early.get("type") != "hyperband":
        problems.append(f"early_terminate.type must be hyperband (got {early.get('type')!r})")
    unknown = sorted(set(early) - set(EARLY_TERMINATE_KEYS))
    if unknown:
        problems.append(
            f"early_terminate has unknown keys {', '.join(unknown)} "
            f"(allowed: {', '.join(EARLY_TERMINATE_KEYS)})"
        )
    for key in ("min_iter", "max_iter", "s"):
        if key in early and not _integer(early[key]):
            problems.append(f"early_terminate.{key} must be a whole number (got {early[key]!r})")
    if "eta" in early and not _number(early["eta"]):
        problems.append(f"early_terminate.eta must be a number (got {early['eta']!r})")
    if "strict" in early and not isinstance(early["strict"], bool):
        problems.append(f"early_terminate.strict must be true or false (got {early['strict']!r})")
    if "min_iter" not in early and not ("max_iter" in early and "s" in early):
        problems.append("early_terminate needs min_iter, or max_iter and s")
    return problems


def _metric_problems(metric) -> list[str]:
    if not isinstance(metric, dict):
        return [f"metric must be a mapping with name and goal (got {metric!r})"]
    problems = []
    unknown = sorted(set(metric) - set(METRIC_KEYS))
    if unknown:
        problems.append(f"metric has unknown keys {', '.join(unknown)} (allowed: {', '.join(METRIC_KEYS)})")
    if not metric.get("name") or not isinstance(metric.get("name"), str):
        problems.append("metric.name is required (the logged value to optimise)")
    if "goal" in metric and metric["goal"] not in GOALS:
        problems.append(f"metric.goal must be one of {', '.join(GOALS)} (got {metric['goal']!r})")
    if "target" in metric and not _number(metric["target"]):
        problems.append(f"metric.target must be a number (got {metric['target']!r})")
    if "impute" in metric and metric["impute"] not in IMPUTES:
        problems.append(f"metric.impute must be one of {', '.join(IMPUTES)} (got {metric['impute']!r})")
    return problems


def sweep_config_problems(config) -> list[str]:
    """Everything wrong with ``config``, one message per problem (empty when valid)."""
    if not isinstance(config, dict):
        return [f"the sweep config must be a mapping (got {type(config).__name__})"]
    problems = []
    unknown = sorted(set(config) - set(TOP_LEVEL), key=str)
    if unknown:
        problems.append(
            f"unknown top-level keys {', '.join(map(str, unknown))} (allowed: {', '.join(TOP_LEVEL)})"
        )
    method = config.get("method")
    if method not in METHODS:
        problems.append(f"method must be one of {', '.join(METHODS)} (got {method!r})")
    for key in ("program", "name", "description", "project", "entity"):
        if config.get(key) is not None and not isinstance(config[key], str):
            problems.append(f"{key} must be a string (got {config[key]!r})")
    if not config.get("program") and not config.get("command"):
        problems.append("program is required (the script to run), unless a command is given")
    command = config.get("command")
    if command is not None:
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            problems.append(f"command must be a non-empty list of strings (got {command!r})")
        elif "${program}" in command and not config.get("program"):
            problems.append("command uses ${program} but no program is given")
    if "metric" in config:
        problems += _metric_problems(config["metric"])
    if method == "bayes" and not (isinstance(config.get("metric"), dict) and config["metric"].get("name")):
        problems.append("method bayes needs a metric with a name and a goal")
    parameters = config.get("parameters")
    if not isinstance(parameters, dict) or not parameters:
        problems.append("parameters must be a non-empty mapping of parameter name to its values")
    else:
        for name, spec in parameters.items():
            problems += _parameter_problems(str(name), spec, method)
    if "early_terminate" in config:
        problems += _early_terminate_problems(config["early_terminate"])
    run_cap = config.get("run_cap")
    if run_cap is not None and (not _integer(run_cap) or run_cap < 1):
        problems.append(f"run_cap must be a positive whole number (got {run_cap!r})")
    controller = config.get("controller")
    if controller is not None and (
        not isinstance(controller, dict) or controller.get("type") not in ("cloud",)
    ):
        problems.append(
            f"controller.type must be cloud: agents here run W&B's own controller (got {controller!r})"
        )
    if "kind" in config and config["kind"] != "sweep":
        problems.append(f"kind must be sweep (got {config['kind']!r})")
    return problems


def fill_distributions(config: dict) -> dict:
    """What the wandb client does before sending: min/max without distribution get one."""
    config = copy.deepcopy(config)

    def fill(parameters: dict) -> None:
        for spec in parameters.values():
            if not isinstance(spec, dict):
                continue
            if isinstance(spec.get("parameters"), dict):
                fill(spec["parameters"])
            elif "min" in spec and "max" in spec and "distribution" not in spec:
                if _integer(spec["min"]) and _integer(spec["max"]):
                    spec["distribution"] = "int_uniform"
                elif _number(spec["min"]) and _number(spec["max"]):
                    spec["distribution"] = "uniform"

    fill(config.get("parameters") or {})
    return config


def canonical(config: dict) -> str:
    """A stable text form: two configs are the same sweep when these are equal."""
    return json.dumps(fill_distributions(config), sort_keys=True, separators=(",", ":"), default=str)


def grid_size(config: dict) -> int | None:
    """How many runs a grid sweep has in all; None for other methods or unbounded grids."""
    if config.get("method") != "grid":
        return None

    def count(parameters: dict) -> int | None:
        size = 1
        for spec in parameters.values():
            if not isinstance(spec, dict):
                return None
            if isinstance(spec.get("parameters"), dict):
                inner = count(spec["parameters"])
                if inner is None:
                    return None
                size *= inner
                continue
            kind = infer_kind(spec)
            if kind in ("categorical", "categorical_w_probabilities"):
                # W&B's grid enumerates distinct values (by their YAML form).
                size *= len({_value_key(v) for v in spec["values"]})
            elif kind == "int_uniform":
                size *= spec["max"] - spec["min"] + 1
            elif kind == "q_uniform":
                # numpy.arange(min, max, q), as W&B's grid search enumerates it.
                size *= max(0, math.ceil((spec["max"] - spec["min"]) / spec.get("q", 1.0) - 1e-9))
            elif kind != "constant":
                return None
        return size

    return count(config.get("parameters") or {})


# What a sweep seeded with another's runs must share with it: the runs' values mean the same
# only for the same search of the same program run the same way toward the same goal.
SUCCESSOR_KEYS = ("method", "metric", "program", "command")


def successor_problems(old: dict, new: dict) -> list[str]:
    """Why ``new`` cannot continue ``old`` as a successor seeded with its runs (empty: it can)."""
    problems = []
    for key in SUCCESSOR_KEYS:
        before, after = old.get(key), new.get(key)
        if key == "metric":  # the same metric toward the same goal; a new target is fine
            before = {k: v for k, v in (before or {}).items() if k in ("name", "goal")} or None
            after = {k: v for k, v in (after or {}).items() if k in ("name", "goal")} or None
        if json.dumps(before, sort_keys=True, default=str) != json.dumps(after, sort_keys=True, default=str):
            problems.append(f"{key} {json.dumps(before, default=str)} -> {json.dumps(after, default=str)}")
    return problems


def _value_key(value) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def grid_points(config: dict) -> list[dict] | None:
    """Every combination a grid sweep hands out, for a grid of top-level lists, constants and
    integer ranges; None for other methods and other grids."""
    if config.get("method") != "grid":
        return None
    axes: list[tuple[str, list]] = []
    for name, spec in (config.get("parameters") or {}).items():
        if not isinstance(spec, dict) or isinstance(spec.get("parameters"), dict):
            return None
        kind = infer_kind(spec)
        if kind == "categorical":
            values, seen = [], set()
            for value in spec["values"]:
                if _value_key(value) not in seen:
                    seen.add(_value_key(value))
                    values.append(value)
        elif kind == "constant":
            values = [spec["value"]]
        elif kind == "int_uniform" and _integer(spec.get("min")) and _integer(spec.get("max")):
            values = list(range(spec["min"], spec["max"] + 1))
        else:
            return None
        axes.append((name, values))
    points: list[dict] = [{}]
    for name, values in axes:
        points = [{**point, name: value} for point in points for value in values]
    return points


def points_done(points: list[dict], runs_params: list[dict]) -> int:
    """How many of a grid's ``points`` one of the runs (their parameters) already has."""
    if not points:
        return 0
    names = sorted(points[0])
    have = {tuple(_value_key(params.get(n)) for n in names) for params in runs_params}
    return sum(1 for point in points if tuple(_value_key(point[n]) for n in names) in have)
