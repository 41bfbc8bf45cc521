"""The Sinkhorn distillation loss: finite, correct gradient, and the gradient reaches the student."""
import math

import numpy as np

import pytest
import torch
from ot.batch import solve_batch

from selkd_ray.training.losses import kl_distillation_loss, sinkhorn_distillation_loss


def test_gradient_matches_finite_differences_in_float64():
    torch.manual_seed(0)
    teacher = torch.randn(4, 5, dtype=torch.float64) * 3
    cost = torch.rand(5, 3, dtype=torch.float64)
    student = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    loss = sinkhorn_distillation_loss(teacher, student, cost, tau=1.0, eps=0.1, max_iter=3000)
    loss.backward()
    step = 1e-6
    for i, j in [(0, 0), (1, 2), (3, 1)]:
        plus, minus = student.detach().clone(), student.detach().clone()
        plus[i, j] += step
        minus[i, j] -= step
        numeric = (sinkhorn_distillation_loss(teacher, plus, cost, 1.0, 0.1, 3000)
                   - sinkhorn_distillation_loss(teacher, minus, cost, 1.0, 0.1, 3000)) / (2 * step)
        assert student.grad[i, j].item() == pytest.approx(numeric.item(), rel=1e-3, abs=1e-7)


def test_value_equals_pot_sinkhorn():
    teacher, student = torch.randn(3, 4), torch.randn(3, 2)
    cost = torch.rand(4, 2)
    expected = solve_batch(cost.expand(3, 4, 2), reg=0.05, a=torch.softmax(teacher / 2, 1),
                           b=torch.softmax(student / 2, 1), method="log_sinkhorn", max_iter=2000, tol=1e-9).value
    ours = sinkhorn_distillation_loss(teacher, student, cost, max_iter=2000)
    assert ours.item() == pytest.approx(expected.mean().item(), rel=1e-3)
    # the default 50 iterations stay close to the converged value
    assert sinkhorn_distillation_loss(teacher, student, cost).item() == pytest.approx(expected.mean().item(), rel=2e-2)


def test_finite_for_confident_predictions_and_small_eps():
    teacher = torch.tensor([[60.0, -60.0, 0.0], [-50.0, 50.0, 0.0]])
    student = torch.tensor([[-80.0, 80.0], [90.0, -90.0]], requires_grad=True)
    loss = sinkhorn_distillation_loss(teacher, student, torch.rand(3, 2), tau=1.0, eps=1e-3)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(student.grad).all()


def test_gradient_reaches_the_student_parameters():
    torch.manual_seed(0)
    student = torch.nn.Linear(6, 3)
    x, teacher = torch.randn(8, 6), torch.randn(8, 5)
    sinkhorn_distillation_loss(teacher, student(x), torch.rand(5, 3)).backward()
    assert student.weight.grad is not None and student.weight.grad.abs().sum() > 0


def test_kl_is_zero_for_identical_logits():
    logits = torch.randn(4, 3)
    assert kl_distillation_loss(logits, logits).item() == pytest.approx(0.0, abs=1e-6)


def test_plain_and_log_domain_sinkhorn_give_the_same_value_and_gradient():
    torch.manual_seed(1)
    teacher, cost = torch.randn(6, 7, dtype=torch.float64), torch.rand(7, 3, dtype=torch.float64)
    results = []
    for method in ("sinkhorn", "log_sinkhorn"):
        student = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2)).requires_grad_()
        loss = sinkhorn_distillation_loss(teacher, student, cost, eps=0.1, max_iter=2000, method=method)
        loss.backward()
        results.append((loss.item(), student.grad))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-6)
    assert torch.allclose(results[0][1], results[1][1], rtol=1e-4, atol=1e-8)


def test_small_eps_switches_to_the_log_domain():
    from selkd_ray.training.losses import sinkhorn_method

    cost = torch.ones(3, 2)
    assert sinkhorn_method(cost, 0.05, torch.float32) == "sinkhorn"
    assert sinkhorn_method(cost, 0.005, torch.float32) == "log_sinkhorn"


def test_the_mixture_loss_at_one_teacher_is_the_single_teacher_loss():
    from selkd_ray.training.losses import mixture_distillation_loss

    torch.manual_seed(0)
    teacher, student, cost = torch.randn(8, 4), torch.randn(8, 3, requires_grad=True), torch.rand(4, 3)
    single = sinkhorn_distillation_loss(teacher, student, cost, 2.0, 0.05)
    mixture = mixture_distillation_loss(teacher, student, cost, (4,), (1.0,), 2.0, 0.05)
    assert torch.equal(single, mixture)
    grad_single, = torch.autograd.grad(single, student)
    grad_mixture, = torch.autograd.grad(mixture, student)
    assert torch.equal(grad_single, grad_mixture)


def test_the_mixture_loss_is_the_weighted_sum_of_each_teachers_own_transport():
    """Each teacher carried through its own cost matrix, weighted; not one transport over the pooled classes."""
    from selkd_ray.training.losses import mixture_distillation_loss

    torch.manual_seed(1)
    first, second = torch.randn(5, 4, dtype=torch.float64), torch.randn(5, 2, dtype=torch.float64)
    student = torch.randn(5, 3, dtype=torch.float64)
    cost_first, cost_second = torch.rand(4, 3, dtype=torch.float64), torch.rand(2, 3, dtype=torch.float64)
    both, costs = torch.cat([first, second], 1), torch.cat([cost_first, cost_second])
    value = mixture_distillation_loss(both, student, costs, (4, 2), (0.7, 0.3), tau=2.0, eps=0.05)
    each = (0.7 * sinkhorn_distillation_loss(first, student, cost_first, 2.0, 0.05)
            + 0.3 * sinkhorn_distillation_loss(second, student, cost_second, 2.0, 0.05))
    assert float(value) == pytest.approx(float(each), rel=1e-12)
    pooled = sinkhorn_distillation_loss(both, student, costs, 2.0, 0.05)  # one problem over all six classes
    assert abs(float(pooled) - float(value)) > 1e-3


def test_per_image_weights_follow_each_teachers_confidence_by_hand():
    from selkd_ray.training.losses import (confidence_weights, mixture_distillation_loss,
                                           sinkhorn_distillation_loss)

    # image 0: the 4-class teacher is sure, the 2-class one undecided; image 1: the reverse; image 2: neither
    sure, flat = torch.tensor([[9.0, 0.0, 0.0, 0.0]]), torch.zeros(1, 4)
    first = torch.cat([sure, flat, flat]).double()
    second = torch.tensor([[0.0, 0.0], [9.0, 0.0], [0.0, 0.0]]).double()
    both = torch.cat([first, second], 1)
    p = torch.softmax(first, 1)
    c_first = 1 + (p * p.log()).sum(1) / math.log(4)  # 1 - H / log C, by hand
    q = torch.softmax(second, 1)
    c_second = 1 + (q * q.log()).sum(1) / math.log(2)
    expected = torch.stack([0.7 * c_first, 0.3 * c_second], 1)
    expected[:2] /= expected[:2].sum(1, keepdim=True)
    expected[2] = torch.tensor([0.7, 0.3], dtype=torch.float64)  # no teacher sure: the teachers' own weights
    weights = confidence_weights(both, (4, 2), (0.7, 0.3))
    assert torch.allclose(weights, expected, atol=1e-12) and torch.allclose(weights.sum(1), torch.ones(3, dtype=torch.float64))
    assert weights[0, 0] > 0.99 and weights[1, 1] > 0.99  # the sure teacher takes the image
    student = torch.randn(3, 3, dtype=torch.float64, requires_grad=True)
    cost_first, cost_second = torch.rand(4, 3, dtype=torch.float64), torch.rand(2, 3, dtype=torch.float64)
    value = mixture_distillation_loss(both, student, torch.cat([cost_first, cost_second]), (4, 2), (0.7, 0.3),
                                      tau=2.0, eps=0.05, per_image=True)
    each = torch.stack([sinkhorn_distillation_loss(first, student, cost_first, 2.0, 0.05, per_image=True),
                        sinkhorn_distillation_loss(second, student, cost_second, 2.0, 0.05, per_image=True)], 1)
    carried = confidence_weights(both, (4, 2), (0.7, 0.3), torch.cat([cost_first, cost_second]))
    assert float(value.detach()) == pytest.approx(float((carried * each).sum(1).mean().detach()), rel=1e-10)
    plain = mixture_distillation_loss(both, student, torch.cat([cost_first, cost_second]), (4, 2), (0.7, 0.3))
    assert abs(float(plain.detach()) - float(value.detach())) > 1e-4  # per-image weights change the objective here
    one = mixture_distillation_loss(first, student, cost_first, (4,), (1.0,), per_image=True)  # K = 1: unchanged
    single = sinkhorn_distillation_loss(first, student, cost_first).detach()
    assert float(one.detach()) == pytest.approx(float(single), rel=1e-12)
    assert torch.autograd.grad(value, student)[0].abs().sum() > 0  # the gradient reaches the student


def test_per_image_weights_trust_a_teacher_where_its_sure_class_maps_onto_one_of_the_students():
    """Issue 42: a specialist sure of a class it was never taught (its class 0 here, which the cost carries
    onto two student classes alike) is unsure of the image once its prediction is carried onto the student's
    labels, and gives way to a teacher whose sure class maps onto one student class."""
    from selkd_ray.scoring.costs import conditional_cost
    from selkd_ray.training.losses import confidence_weights

    spread = torch.tensor(conditional_cost(np.array([[1.0, 0.0]] * 4 + [[0.0, 1.0]] * 2),
                                           np.array([0, 0, 1, 1, 2, 2]), 3))  # its 0: student 0 or 1
    clean = torch.tensor(conditional_cost(np.array([[1.0, 0.0]] * 2 + [[0.0, 1.0]] * 4),
                                          np.array([0, 0, 1, 1, 2, 2]), 3))  # its 0: student 0 alone
    sure = torch.tensor([[9.0, 0.0, 9.0, 0.0]], dtype=torch.float64)  # both sure of their class 0
    raw = confidence_weights(sure, (2, 2), (0.5, 0.5))
    mapped = confidence_weights(sure, (2, 2), (0.5, 0.5), torch.cat([spread, clean]))
    assert raw[0, 0] == pytest.approx(0.5)  # alike by their own confidence
    assert mapped[0, 1] > 0.7 > 0.3 > mapped[0, 0]  # the one whose class maps onto one student class takes it
    # (1 - log 2 / log 3 = 0.37 for the spread one, about 1 for the clean one)
