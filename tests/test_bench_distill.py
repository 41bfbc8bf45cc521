"""bench/distill.py --quick in the suite's Ray: every step of the distillation benchmark (Ray Train against the
plain loop, the OT term's cost, students over seeds, the lambda / tau / eps sweep) on the suite's tiny zoo, so a
change that breaks the script fails here (it once broke unseen when scan rows became typed records)."""
import importlib.util
import json
import sys
from pathlib import Path

import pyarrow.parquet as pq

BENCH = Path(__file__).resolve().parents[1] / "bench" / "distill.py"


def test_quick_distillation_benchmark_runs_every_step(ray_session, runner_pool, tiny_zoo, target_task, tmp_path, capsys):
    import shutil

    # the teacher of the target's own classes under the target's own names: KL distillation applies to it
    same_labels = Path(shutil.copytree(tiny_zoo / "own-classes", tmp_path / "teachers" / "same-labels"))
    config = json.loads((same_labels / "config.json").read_text())
    config["label_names"] = list(target_task.label_names)
    (same_labels / "config.json").write_text(json.dumps(config))
    spec = importlib.util.spec_from_file_location("bench_distill", BENCH)
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_distill"] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        from ray import cloudpickle

        cloudpickle.register_pickle_by_value(module)  # its students run on Ray Data (fan_out)
        figures = module.run(tmp_path / "out", module.QUICK, zoo=tiny_zoo, same_labels=same_labels,
                             runners=runner_pool)  # its scan on the suite's pool
    finally:
        del sys.modules["bench_distill"]
    printed = capsys.readouterr().out
    assert "scan (" in printed and "Ray Train overhead: epoch" in printed and "OT loss overhead" in printed
    assert figures["ray_train_overhead"]["epoch_ratio"] > 0 and figures["ot_loss_overhead"]["ratio"] > 0
    labels = set(figures["accuracy"])
    assert "labels only" in labels and any(label.startswith("top (") for label in labels)
    assert {"KL from same-labels", "OT from same-labels"} <= labels
    assert {"defaults", "lam=0.3", "lam=3.0", "tau=1.0", "tau=4.0", "eps=0.02", "eps=0.2"} == set(figures["sweep"])
    assert all(0.0 <= row["mean"] <= 1.0 and row["n"] == 1 for row in
               [*figures["accuracy"].values(), *figures["sweep"].values()])
    rows = pq.read_table(tmp_path / "out" / "distill-students.parquet").to_pylist()
    assert len(rows) == len(figures["accuracy"]) + len(figures["sweep"])
    assert json.loads((tmp_path / "out" / "distill-bench.json").read_text())["wall_s"] > 0
    assert not (tmp_path / "out" / "zoo-3").exists() and not (tmp_path / "out" / "same-labels").exists()
