"""What `--json` prints: each command's result as one JSON document."""
from __future__ import annotations


def select_json(result) -> dict:
    """The selection as one JSON document: the decision, what each stage spent, the race's trials."""
    from selkd_ray.rows import as_row

    return {"student": str(result.student_dir), "kept": result.kept, "teacher": result.teacher,
            "lambda": result.lam, "test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy,
            "message": result.message, "stages": [as_row(s) for s in result.stages],
            "trials": [as_row(t) for t in result.trials], "selection": str(result.selection_path),
            "experience": str(result.experience_path) if result.experience_path else None,
            "mixture": {"teachers": list(result.mixture), "weights": list(result.mixture_weights)}
            if result.mixture else None}


def distill_json(result) -> dict:
    return {"student": str(result.student_dir), "metrics": str(result.metrics_path), "teacher": result.teacher,
            "test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy,
            "best_epoch": result.best_epoch, "epochs": len(result.history), "stopped": result.stopped,
            "flops": result.flops, "run": result.run_name, "weights": list(result.weights)}


def scan_json(result) -> dict:
    """The scan as one JSON document: counts, spending and every teacher's row (cost matrices left out)."""
    from selkd_ray.rows import as_row

    rows = [{k: v for k, v in as_row(row).items() if k != "cost_matrix"} for row in result.rows]
    return {"scores": str(result.scores_path), "catalogue": str(result.catalogue_path), "ran": result.ran,
            "cached": result.cached, "failed": result.failed, "dropped": result.dropped,
            "skipped": result.skipped, "flops": result.flops, "seconds": result.seconds, "spent": result.spent,
            "runners": list(result.runners), "recomputed": list(result.recomputed),
            "uninformative": dict(result.uninformative), "teachers": rows}
