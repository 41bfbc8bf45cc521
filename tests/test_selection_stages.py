"""A selection's stages after the scan, on a real scan of the tiny zoo: a shortlisted teacher whose outputs on
the student's images fail is left out in one line and the selection goes on (issue 27's rule for a mixture
member); the race's mixture keeps its other members."""
import pytest

from selkd_ray.budget import Ledger
from selkd_ray.config import ScanConfig
from selkd_ray.plans.stages import Selection, race
from selkd_ray.selection import SelectConfig, shortlist


def selection_on(scan_here, zoo, task, out, **settings) -> tuple[Selection, list[str], list[str]]:
    lines: list[str] = []
    config = SelectConfig(scan=ScanConfig(probe_per_class=10), shortlist=3, **settings)
    scanned = scan_here(zoo, task, out, config.scan)
    run = Selection(task, out, config, Ledger(None), scanned, lines.append, None)
    return run, shortlist([row.teacher_id for row in scanned.ranked], 3, ()), lines


def break_weights(zoo, teacher_id: str) -> None:
    weights = zoo / teacher_id / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])  # changed after the scan: no longer loads


def test_a_mixture_member_whose_outputs_fail_is_left_out_and_the_mixture_goes_on(scan_here, zoo_copy, target_task,
                                                                               tmp_path):
    run, short, lines = selection_on(scan_here, zoo_copy, target_task, tmp_path, mixture=3)
    run.plan_mixture(short)
    before = dict(zip(run.mixture, run.mixture_weights))
    assert len(before) == 3
    broken = short[1]
    break_weights(zoo_copy, broken)
    data = run.teacher_data(short)
    assert set(data) == set(short) - {broken}  # the others' outputs were computed
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
