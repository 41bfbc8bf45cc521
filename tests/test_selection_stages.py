"""A selection's stages after the scan, on a real scan of the tiny zoo: a shortlisted teacher whose outputs on
the student's images fail is left out in one line and the selection goes on (issue 27's rule for a mixture
member); the race's mixture keeps its other members; ASHA stops trials; a harmful teacher loses the race."""
import pytest

from selkd_ray.budget import Ledger
from selkd_ray.config import ScanConfig
from selkd_ray.plans.mixtures import plan_top_k
from selkd_ray.plans.stages import Selection, race
from selkd_ray.selection import LABELS_ONLY, SelectConfig, shortlist


def selection_on(scan_here, zoo, task, out, **settings) -> tuple[Selection, list[str], list[str]]:
    lines: list[str] = []
    config = SelectConfig(scan=ScanConfig(probe_per_class=10), shortlist=3, **settings)
    scanned = scan_here(zoo, task, out, config.scan)
    run = Selection(task, out, config, Ledger(None), scanned, lambda event: lines.append(str(event)), None)
    return run, shortlist([row.teacher_id for row in scanned.ranked], 3, ()), lines


def break_weights(zoo, teacher_id: str) -> None:
    weights = zoo / teacher_id / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # changed after the scan: no longer loads


def test_a_mixture_member_whose_outputs_fail_is_left_out_and_the_mixture_goes_on(scan_here, zoo_copy, target_task,
                                                                               tmp_path):
    run, short, lines = selection_on(scan_here, zoo_copy, target_task, tmp_path, mixture=3)
    plan_top_k(run, short)
    before = dict(zip(run.mixture, run.mixture_weights))
    assert len(before) == 3
    broken = short[1]
    break_weights(zoo_copy, broken)
    data = run.teacher_data(short)
    assert set(data) == set(short) - {broken}  # the others' outputs were computed
    for teacher in data:  # and said so as they went, as `distill` says it (a long stage shows progress)
        assert any(line.startswith(f"teacher outputs: {teacher} on ") and "student images" in line for line in lines)
    assert broken in run.failed and "model.safetensors" in run.failed[broken]
    assert any(f"teacher outputs: {broken} failed" in line and "goes on without it" in line for line in lines)
    kept = [t for t in short if t != broken]
    assert run.mixture == tuple(kept)  # the other two still race as one mixture, their weights renormalised
    total = before[kept[0]] + before[kept[1]]
    assert run.mixture_weights == pytest.approx((before[kept[0]] / total, before[kept[1]] / total))
    assert any(line.startswith(f"mixture: without {broken}") for line in lines)
    break_weights(zoo_copy, kept[1])  # one member left: no mixture, said in one line
    run.teachers.clear()
    run.teacher_data(short)
    assert run.mixture == () and any("fewer than two members left" in line for line in lines)


def test_without_a_race_the_first_teacher_whose_outputs_can_be_had_is_distilled(scan_here, zoo_copy, target_task,
                                                                                tmp_path):
    run, short, lines = selection_on(scan_here, zoo_copy, target_task, tmp_path, race=False)
    break_weights(zoo_copy, short[0])
    winner, trials, note = race(run, short)
    assert winner.teacher_id == short[1] and trials == [] and "no race" in note
    assert list(run.failed) == [short[0]]


def test_asha_stops_trials_past_its_grace_period_and_their_rows_say_so(ray_session, scan_here, tiny_zoo,
                                                                      target_task, tmp_path):
    """A race of four trials (a pinned teacher at three OT weights, and label-only) for up to 6 epochs, ASHA
    with grace 2 and halving at each rung: ASHA stops trials once past its grace period, and their rows say so
    with the epochs they ran; the winner is among the trials that ran every epoch, and the label-only reference
    is never stopped (the race's verdict pairs it with the winner). Without ASHA nothing stops. (Grace 1 of 4
    epochs stopped nothing once every student kept its last epoch on a cosine schedule: after one epoch at
    the schedule's top rate the trials tied.)
    (On this tiny zoo the random-label teacher is no harm to the student: its trials beat label-only here; the
    harmful teacher is the next test's, made to say one class.)"""
    from selkd_ray.plans.select import selection_costs

    config = SelectConfig(scan=ScanConfig(probe_per_class=10), shortlist=1, pinned=("random",),
                          lambdas=(3.0, 10.0, 30.0), race_epochs=6, grace_epochs=2, reduction_factor=2)
    scanned = scan_here(tiny_zoo, target_task, tmp_path, config.scan)
    run = Selection(target_task, tmp_path, config, Ledger(None), scanned, [].append,
                    selection_costs(target_task, config))
    winner, trials, note = race(run, ["random"])
    summary = [(t.candidate, t.lam, t.epochs, round(t.val_accuracy, 3), t.status) for t in trials]
    assert note == "" and len(trials) == 4, summary
    stopped = [t for t in trials if t.status == "stopped early"]
    assert stopped and all(2 <= t.epochs < 6 for t in stopped), summary
    won = next(t for t in trials if t.status == "winner")
    assert won.epochs == 6 and (won.candidate, won.lam) == (winner.teacher_id, winner.lam), summary
    assert {t.candidate for t in trials} == {"random", LABELS_ONLY}
    assert next(t for t in trials if t.candidate == LABELS_ONLY).epochs == 6, summary


def confidently_constant(zoo, source: str, name: str):
    """A harmful teacher: `source`'s folder with its classifier's weights zeroed and one bias high, so it says
    its first class, sure of it, whatever the image (saved as timm's folder holds it, weights and all)."""
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    folder = shutil.copytree(zoo / source, zoo / name)
    weights = load_file(folder / "model.safetensors")
    head = next(key for key in weights if key.endswith(("fc.weight", "classifier.weight")))
    bias = head.removesuffix("weight") + "bias"
    weights[head] = torch.zeros_like(weights[head])
    weights[bias] = torch.zeros_like(weights[bias])
    weights[bias][0] = 12.0
    save_file(weights, folder / "model.safetensors", metadata={"format": "pt"})


def test_a_harmful_teacher_pinned_into_the_race_loses_it_to_label_only(scan_here, zoo_copy, target_task, tmp_path):
    """A teacher that says one class, sure of it, for every image, pinned at the top of the shortlist and raced
    with a heavy OT weight against label-only (same epochs, no ASHA stop): its student learns the one class, and
    the race's rule (the paired comparison on the race's validation half) hands the win to label-only. A race
    that took the top of the shortlist, or compared nothing, would hand it to the harmful teacher."""
    confidently_constant(zoo_copy, "own-classes", "constant")
    config = SelectConfig(scan=ScanConfig(probe_per_class=10), shortlist=1, pinned=("constant",), lambdas=(100.0,),
                          race_epochs=3, grace_epochs=3)
    scanned = scan_here(zoo_copy, target_task, tmp_path, config.scan)
    from selkd_ray.plans.select import selection_costs

    run = Selection(target_task, tmp_path, config, Ledger(None), scanned, [].append,
                    selection_costs(target_task, config))
    winner, trials, note = race(run, ["constant"])
    rows = {t.candidate: t for t in trials}
    summary = [(t.candidate, t.epochs, round(t.val_accuracy, 3), t.status) for t in trials]
    assert set(rows) == {"constant", LABELS_ONLY} and all(t.epochs == 3 for t in trials), summary
    assert rows["constant"].val_accuracy < rows[LABELS_ONLY].val_accuracy, summary  # it does harm
    assert winner.teacher_id == LABELS_ONLY and rows[LABELS_ONLY].status == "winner", summary
