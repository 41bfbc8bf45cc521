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
