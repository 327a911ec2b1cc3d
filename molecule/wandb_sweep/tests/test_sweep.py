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
    assert config["command"] == ["/opt/sweep-fleet/venv/bin/python", "${program}", "${args}"]
    assert config["parameters"]["layers"] == {"min": 1, "max": 3, "distribution": "int_uniform"}
    assert config["metric"] == {"name": "loss", "goal": "minimize"}
    assert sweep["state"] == "RUNNING"


def test_nothing_is_left_on_the_host(host):
    # The sweep role only talks to W&B from the controller.
    assert not host.file("/etc/sweep-fleet").exists
