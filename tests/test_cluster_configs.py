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
    elif isinstance(node, str) and "exec selkd " in node:  # a shell line that installs selkd, then runs it
        found.append(shlex.split(node.split("exec selkd ", 1)[1]))
    return found


def test_there_are_configs_for_each_way_of_running():
    names = {p.name for p in FILES}
    assert {"cluster-launcher.yaml", "kuberay-raycluster.yaml", "kuberay-rayjob-scan.yaml",
            "scheduled-scan-cronjob.yaml", "kuberay-raycronjob-scan.yaml", "runtime-env.yaml",
        "kuberay-networkpolicy.yaml"} <= names


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


def test_selkd_is_installed_pinned_wherever_a_config_runs_it():
    """Every place a config installs selkd-ray names its version (the project's own), and every container or
    job that runs `selkd` gets it installed: a plain Ray image holds no selkd."""
    import json
    import re
    import tomllib

    version = tomllib.loads((CLUSTER.parent / "pyproject.toml").read_text())["project"]["version"]
    text = "\n".join(path.read_text() for path in FILES)
    named = re.findall(r"""["']selkd-ray(==[0-9.]+)?["']""", text)  # a requirement, quoted as pip lists hold it
    assert named and all(pin == f"=={version}" for pin in named), named
    rayjob = documents("kuberay-rayjob-scan.yaml")[0]["spec"]
    assert f"selkd-ray=={version}" in rayjob["runtimeEnvYAML"]
    submitter = documents("scheduled-scan-cronjob.yaml")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    command = submitter["containers"][0]["command"]
    runtime_env = json.loads(next(c for c in command if c.startswith("--runtime-env-json=")).split("=", 1)[1])
    assert runtime_env["pip"] == [f"selkd-ray=={version}"] and command.index("selkd") > command.index("--")
    report = documents("kuberay-raycronjob-scan.yaml")[1]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    shell = report["containers"][0]["command"][-1]
    assert shell.startswith(f"pip install --quiet 'selkd-ray=={version}' && exec selkd report")


def test_the_network_policy_admits_only_the_clusters_pods_and_the_submitter():
    cluster = documents("kuberay-raycluster.yaml")[0]
    policy = documents("kuberay-networkpolicy.yaml")[0]
    own = {"ray.io/cluster": cluster["metadata"]["name"]}  # the label KubeRay puts on every pod of the cluster
    assert policy["kind"] == "NetworkPolicy" and policy["spec"]["podSelector"]["matchLabels"] == own
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    (rule,) = policy["spec"]["ingress"]
    submitter = documents("scheduled-scan-cronjob.yaml")[0]["spec"]["jobTemplate"]["spec"]["template"]
    assert [peer["podSelector"]["matchLabels"] for peer in rule["from"]] == [own, submitter["metadata"]["labels"]]
    assert "ports" not in rule and all(set(peer) == {"podSelector"} for peer in rule["from"])  # no CIDR, no namespace
