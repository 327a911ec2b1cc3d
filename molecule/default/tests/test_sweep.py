"""wandb_sweep: exactly one sweep, with the rendered config, in the W&B API stand-in."""

import json
import os
import urllib.request


def sweeps():
    with urllib.request.urlopen(os.environ["STANDIN_URL"] + "/_standin/sweeps", timeout=10) as resp:
        return json.load(resp)


def test_one_sweep_with_the_rendered_config(host):
    (sweep,) = sweeps()
    config = sweep["config"]
    assert sweep["path"].split("/")[1] == "molecule"
    assert config["name"] == "molecule-grid"
    assert config["command"] == [".sweep-fleet-venv/bin/python", "${program}", "${args}"]
    assert config["parameters"]["seed"] == {"min": 1, "max": 3, "distribution": "int_uniform"}
    assert config["metric"] == {"name": "mean_score", "goal": "maximize"}
    assert sweep["state"] == "RUNNING"
