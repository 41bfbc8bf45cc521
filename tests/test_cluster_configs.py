"""cluster/: every YAML parses, and every `selkd` command in it is a real command with real options."""
import shlex
from pathlib import Path

import pytest
import yaml
from typer.main import get_command

from selkd_cli.main import app

CLUSTER = Path(__file__).resolve().parents[1] / "cluster"
FILES = sorted(CLUSTER.glob("*.yaml"))


def selkd_commands(node) -> list[list[str]]:
    """Every selkd command line in a parsed YAML: entrypoint strings and command lists."""
    found = []
    if isinstance(node, dict):
        for value in node.values():
            found += selkd_commands(value)
    elif isinstance(node, list):
        if "selkd" in node and all(isinstance(item, str) for item in node):
            found.append(node[node.index("selkd") + 1:])
        else:
            for value in node:
                found += selkd_commands(value)
    elif isinstance(node, str) and node.strip().startswith("selkd "):
        found.append(shlex.split(node)[1:])
    return found


def test_there_are_configs_for_each_way_of_running():
    names = {p.name for p in FILES}
    assert {"cluster-launcher.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob-scan.yaml",
            "scheduled-scan-cronjob.yaml", "kuberay-raycronjob-scan.yaml", "runtime-env.yaml"} <= names


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_yaml_parses_and_its_selkd_commands_are_real(path):
    documents = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    assert documents
    command = get_command(app)
    for arguments in (c for d in documents for c in selkd_commands(d)):
        name, options = arguments[0], arguments[1:]
        assert name in command.commands, f"{path.name}: 'selkd {name}' is not a command"
        command.commands[name].make_context(f"selkd {name}", list(options))  # raises on an unknown option


def test_the_scheduled_and_submitted_scans_are_found():
    commands = [c for p in FILES for d in yaml.safe_load_all(p.read_text()) if d for c in selkd_commands(d)]
    assert sum(c[0] == "scan" for c in commands) >= 2


def cluster_specs(node) -> list[dict]:
    """Every RayCluster spec in a parsed KubeRay document (a RayCluster's spec, a RayJob's rayClusterSpec...)."""
    found = []
    if isinstance(node, dict):
        if "headGroupSpec" in node:
            found.append(node)
        for value in node.values():
            found += cluster_specs(value)
    elif isinstance(node, list):
        for value in node:
            found += cluster_specs(value)
    return found


def documents(name: str) -> list:
    return [d for d in yaml.safe_load_all((CLUSTER / name).read_text()) if d]


def test_every_config_provisions_token_authentication():
    """No Ray cluster of ours comes up without token auth, and every client the configs define carries the token."""
    specs = [spec for path in FILES for d in yaml.safe_load_all(path.read_text()) if d for spec in cluster_specs(d)]
    assert len(specs) == 3  # the RayCluster, the RayJob's and the RayCronJob's
    assert all(spec.get("authOptions", {}).get("mode") == "token" for spec in specs)
    secret = documents("kuberay-raycluster.yaml")[0]["spec"]["authOptions"]["secretName"]
    cron = documents("scheduled-scan-cronjob.yaml")[0]
    submitter = cron["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    env = {item["name"]: item for item in submitter["env"]}
    assert env["RAY_AUTH_MODE"]["value"] == "token"
    assert env["RAY_AUTH_TOKEN"]["valueFrom"]["secretKeyRef"] == {"name": secret, "key": "auth_token"}
    launcher = documents("cluster-launcher.yaml")[0]
    starts = [c for c in launcher["head_start_ray_commands"] + launcher["worker_start_ray_commands"] if "ray start" in c]
    assert starts and all(c.startswith("RAY_AUTH_MODE=token ray start") for c in starts)
    assert launcher["file_mounts"]["/home/ubuntu/.ray/auth_token"] == "~/.ray/auth_token"
    assert not any("--dashboard-host=0.0.0.0" in c for c in starts)
