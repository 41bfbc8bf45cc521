"""Scheduled scans of a growing zoo: the history table, `selkd history`, and the HTML report in a browser."""
import base64
import json
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from selkd_cli.main import app
from selkd_ray.api import scan
from selkd_ray.config import ScanConfig
from selkd_ray.io.history import read_history

runner = CliRunner()
CONFIG = ScanConfig(scorers=("leep", "ot"), probe_per_class=6, budget="1e12", eta=3, min_probe=2)


def grow(zoo: Path, teacher: str, new_name: str) -> None:
    """A new teacher joins the zoo: a copy of `teacher` with its weights nudged (so it hashes apart)."""
    folder = Path(shutil.copytree(zoo / teacher, zoo / new_name))
    weights = load_file(folder / "model.safetensors")
    first = next(k for k, v in weights.items() if v.is_floating_point())
    weights[first] = weights[first] + 1e-4
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


@pytest.fixture(scope="module")
def scanned(runner_pool, tiny_zoo, target_task, tmp_path_factory):
    """The same scan three times, as a scheduler would run it: unchanged zoo, then a zoo grown by one (one
    runner kept across the three scans, as a scheduler's driver may)."""
    zoo = Path(shutil.copytree(tiny_zoo, tmp_path_factory.mktemp("growing") / "zoo"))
    out = tmp_path_factory.mktemp("scheduled")
    results = [scan(zoo, target_task, out, CONFIG, runners=runner_pool),
               scan(zoo, target_task, out, CONFIG, runners=runner_pool)]
    grow(zoo, "own-classes", "own-classes-v2")
    results.append(scan(zoo, target_task, out, CONFIG, runners=runner_pool))
    return out, results


def test_every_scan_is_recorded_and_a_rescan_costs_only_what_is_new(scanned):
    out, results = scanned
    history = read_history(out / "history.parquet")
    assert [h["zoo_size"] for h in history] == [3, 3, 4]
    assert [h["new"] for h in history] == [3, 0, 1]
    assert history[0]["ran"] == 3 and history[0]["flops"] > 0
    assert history[1]["ran"] == 0 and history[1]["flops"] == 0  # unchanged zoo: nothing ran
    assert history[2]["ran"] == 1 and history[2]["flops"] > 0  # only the new teacher ran
    new_rows = [r for r in results[2].rows if r.teacher_id == "own-classes-v2"]
    old_rows = [r for r in results[2].rows if r.teacher_id != "own-classes-v2"]
    assert new_rows[0].flops > 0 and all(r.flops == 0 for r in old_rows if r.round == 0)
    assert set(history[2]["top_teachers"][:2]) == {"own-classes", "own-classes-v2"}
    assert all(len(h["top_teachers"]) == len(h["top_scores"]) for h in history)
    assert len(history[0]["round_flops"]) == 2 and history[0]["round_flops"] == sorted(history[0]["round_flops"])


def test_selkd_history_prints_a_table_and_json(scanned):
    out, _ = scanned
    result = runner.invoke(app, ["history", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = result.output.strip().splitlines()
    assert lines[0].startswith("scanned at") and len(lines) == 2 + 3
    assert "own-classes" in lines[-1]
    rows = json.loads(runner.invoke(app, ["history", "--out", out.as_uri(), "--json"]).stdout)  # a filesystem URI
    assert [r["zoo_size"] for r in rows] == [3, 3, 4]


def test_history_of_a_folder_with_no_scan_is_one_line(tmp_path):
    result = runner.invoke(app, ["history", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert result.output.strip().splitlines() == [f"error: {tmp_path}: no history.parquet; expected the output "
                                                  "folder of at least one `selkd scan`"]


class Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.headings, self.tables = [], [], 0

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs)
        self.tables += tag == "table"
        self._heading = tag in ("h1", "h2")

    def handle_data(self, data):
        if getattr(self, "_heading", False) and data.strip():
            self.headings.append(data.strip())
            self._heading = False


def test_report_is_valid_html_with_every_plot(scanned):
    out, _ = scanned
    result = runner.invoke(app, ["report", "--out", str(out)])
    assert result.exit_code == 0, result.output
    page = (out / "report.html").read_text()
    parser = Images()
    parser.feed(page)
    assert {"Ranking", "Score against budget round", "Spent against budget (last scan)", "Scan history"} <= set(parser.headings)
    alts = [img["alt"] for img in parser.images]
    assert alts == ["ranking with score bars", "score by round", "scan spending", "top teachers over scans"]
    for img in parser.images:
        prefix = "data:image/png;base64,"
        assert img["src"].startswith(prefix)
        png = base64.b64decode(img["src"][len(prefix):])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5_000
    assert parser.tables >= 2 and "own-classes-v2" in page and "http" not in page.replace("http-equiv", "")


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed (setup.sh --with-browser)")
def test_report_renders_in_headless_chromium(scanned, tmp_path):
    out, _ = scanned
    runner.invoke(app, ["report", "--out", str(out), "--html", str(tmp_path / "report.html")])
    shot = tmp_path / "shot.png"
    done = subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                           "--disable-background-networking", "--disable-component-update", "--disable-sync",
                           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,2400",
                           f"--screenshot={shot}", (tmp_path / "report.html").as_uri()],
                          capture_output=True, text=True, timeout=120)
    assert shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"), dtype=np.float64)
    assert pixels.shape == (2400, 1100)
    assert pixels.std() > 20  # not blank: text, tables and plots
    assert (pixels < 128).mean() > 0.01  # a real share of dark pixels (text, bars, lines)


def test_writes_the_file_system_refuses_are_one_line_and_leave_nothing_behind(scanned, tiny_zoo, task_path,
                                                                              tmp_path):
    """A report onto a directory, a catalogue onto a directory, a cache folder that is a file (refused before any
    work, as a --cache that does not exist): exit 2 with the path and the reason in one line (never 1, which says "invalid teachers"), no staging file left."""
    out, _ = scanned
    folder = tmp_path / "a-folder"
    folder.mkdir()
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder\n")
    cases = [(["report", "--out", str(out), "--html", str(folder)],
              f"--html: {folder} is a directory; expected the report's file path"),
             (["zoo", "index", str(tiny_zoo), "--out", str(folder)], f"{folder}"),
             (["distill", "--teacher", str(tiny_zoo / "own-classes"), "--task", str(task_path), "--out",
               str(tmp_path / "students"), "--cache", str(a_file), "--epochs", "1"],
              f"--cache: {a_file} is not a folder; expected a prediction cache")]
    for args, expected in cases:
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output)
        lines = [line for line in result.output.strip().splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], (args, result.output)
    assert sorted(p.name for p in folder.iterdir()) == [] and a_file.read_text() == "not a folder\n"
    assert not (tmp_path / ".a-folder.tmp").exists() and not (out / ".report.html.tmp").exists()


def own_mounts() -> bool:
    """Whether this machine lets an unprivileged process mount a tmpfs in its own namespaces (`unshare -rm`)."""
    try:
        return subprocess.run(["unshare", "-rm", "true"], capture_output=True, timeout=30).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@pytest.mark.skipif(not own_mounts(), reason="needs `unshare -rm` to mount a small tmpfs of its own")
def test_a_full_disk_a_read_only_one_and_a_path_too_long_are_one_line_and_lose_nothing(scanned, tmp_path):
    """Real file systems that refuse: a 64 KiB tmpfs filled to the brim, then remounted read-only, in a fresh
    process's own mount namespace. Each refusal is exit 2 and one line naming the file the user asked for (not
    a staging file, not "a file"); what was written before stays byte for byte; no staging file is left."""
    import sys

    out, _ = scanned
    disk, log = tmp_path / "disk", tmp_path / "log"
    disk.mkdir()
    log.mkdir()
    selkd = f"{sys.executable} -m selkd_cli.main"
    table = (f"{sys.executable} -c \"import pyarrow as pa; from selkd_ray.io.atomic import write_table; "
             f"write_table(pa.table({{'a': list(range(100_000))}}), '{disk}/old.parquet')\"")
    script = f"""
        mount -t tmpfs -o size=64k tmpfs {disk} || exit 97
        printf 'the old report\\n' > {disk}/report.html
        {sys.executable} -c "import pyarrow as pa, pyarrow.parquet as pq; pq.write_table(pa.table({{'a': [1]}}), '{disk}/old.parquet')"
        dd if=/dev/zero of={disk}/filler bs=4k 2>/dev/null
        cp {disk}/report.html {log}/report-before; cp {disk}/old.parquet {log}/parquet-before
        {selkd} report --out {out} --html {disk}/report.html 2>{log}/full-report; echo $? > {log}/full-report.rc
        {table} 2>{log}/full-table; echo $? > {log}/full-table.rc
        ls -A {disk} > {log}/full-listing
        mount -o remount,ro {disk} || exit 98
        {selkd} report --out {out} --html {disk}/new.html 2>{log}/ro-report; echo $? > {log}/ro-report.rc
        cmp -s {disk}/report.html {log}/report-before && cmp -s {disk}/old.parquet {log}/parquet-before; echo $? > {log}/kept
    """
    done = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]

    def refusal(name: str) -> str:
        lines = [line for line in (log / name).read_text().splitlines() if line.strip()]
        assert (log / f"{name}.rc").read_text().strip() in ("1", "2") and len(lines) >= 1, lines
        return lines[-1]

    full = "no space left on the device; the files written before are kept whole"
    assert (log / "full-report.rc").read_text().strip() == "2"
    assert [line for line in (log / "full-report").read_text().splitlines() if line.strip()] == [
        f"error: {disk}/report.html: {full}"]
    # a table write on a full disk names the table: the OSError the CLI turns into that line
    assert f"OSError: [Errno 28] No space left on device: '{disk}/old.parquet'" in refusal("full-table")
    assert (log / "full-listing").read_text().split() == ["filler", "old.parquet", "report.html"]  # no staging
    assert (log / "ro-report.rc").read_text().strip() == "2"
    assert [line for line in (log / "ro-report").read_text().splitlines() if line.strip()] == [
        f"error: {disk}/new.html: the file system is read-only"]
    assert (log / "kept").read_text().strip() == "0"  # the old report and table, byte for byte

    # a path longer than the file system takes: one line, and not one folder made on the way
    long = tmp_path / ("x" * 300) / "a" / "b" / "report.html"
    result = runner.invoke(app, ["report", "--out", str(out), "--html", str(long)])
    assert result.exit_code == 2 and result.output.strip().splitlines() == [
        f"error: {long}: the path is too long for the file system"], result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["disk", "log"]
