"""The contrastive loss against hand-computed values, cross-entropy, and its gradient."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from boostmdr.loss import contrastive_loss, hard_negative_weighting, positive_targets, similarity_scores

# Two queries, group size 2 (query 0 owns passages 0,1; query 1 owns passages 2,3), dot product:
#   q0 . p = [2, 1, 0, 1]   positive p0 (score 2)
#   q1 . p = [0, 1, 1, 0]   positive p2 (score 1)
Q = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
P = torch.tensor([[2.0, 0.0], [1.0, 1.0], [0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
E = math.e


def test_scores_dot_and_cosine_by_hand():
    assert similarity_scores(Q, P, "dot").tolist() == [[2.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 0.0]]
    r = 1 / math.sqrt(2)
    assert torch.allclose(
        similarity_scores(Q, P, "cos"), torch.tensor([[1.0, r, 0.0, 1.0], [0.0, r, 1.0, 0.0]], dtype=torch.float64)
    )


def test_unweighted_loss_matches_closed_form():
    out = contrastive_loss(Q, P, group_size=2, temperature=1.0, similarity="dot")
    # L0 = log(e^2 + e + 1 + e) - 2 ; L1 = log(1 + e + e + 1) - 1
    l0, l1 = math.log(E**2 + 2 * E + 1) - 2, math.log(2 + 2 * E) - 1
    assert l0 == pytest.approx(0.6265233750364456, abs=1e-15)
    assert l1 == pytest.approx(1.006408868078168, abs=1e-15)
    assert out.per_query.tolist() == pytest.approx([l0, l1], abs=1e-12)
    assert out.loss.item() == pytest.approx((l0 + l1) / 2, abs=1e-12)
    assert out.accuracy.item() == 0.5  # query 1's positive only ties with column 1, and a tie does not count


def test_temperature_divides_scores():
    out = contrastive_loss(Q, P, group_size=2, temperature=0.5, similarity="dot")
    # scores doubled: L0 = log(e^4 + 2e^2 + 1) - 4 ; L1 = log(2 + 2e^2) - 2
    assert out.per_query.tolist() == pytest.approx([0.2538560220859445, 0.8200751916029176], abs=1e-12)


def test_per_passage_weights_enter_the_denominator():
    # w = [9, 0.5, 2, 0]; a query's own positive ignores its entry (weight 1):
    #   L0 = -log(e^2 / (e^2 + 0.5 e^1 + 2 e^0 + 0 e^1))       = 0.37473802080111884
    #   L1 = -log(e^1 / (9 e^0 + 0.5 e^1 + e^1 + 0 e^0))       = 1.57088728859376
    w = torch.tensor([9.0, 0.5, 2.0, 0.0], dtype=torch.float64)
    out = contrastive_loss(Q, P, group_size=2, temperature=1.0, weights=w, similarity="dot")
    assert out.per_query.tolist() == pytest.approx([0.37473802080111884, 1.57088728859376], abs=1e-12)


def test_per_pair_weights_equal_the_broadcast_per_passage_weights():
    w = torch.tensor([9.0, 0.5, 2.0, 0.0], dtype=torch.float64)
    a = contrastive_loss(Q, P, 2, 1.0, weights=w, similarity="dot").per_query
    b = contrastive_loss(Q, P, 2, 1.0, weights=w.expand(2, 4).clone(), similarity="dot").per_query
    assert torch.equal(a, b)


def test_unit_weights_equal_cross_entropy_exactly():
    torch.manual_seed(0)
    q, p = torch.randn(5, 8), torch.randn(5 * 4, 8)
    for sim in ("cos", "dot"):
        ref = F.cross_entropy(similarity_scores(q, p, sim) / 0.07, positive_targets(5, 4))
        plain = contrastive_loss(q, p, 4, 0.07, similarity=sim).loss
        ones = contrastive_loss(q, p, 4, 0.07, weights=torch.ones(20), similarity=sim).loss
        ones_pair = contrastive_loss(q, p, 4, 0.07, weights=torch.ones(5, 20), similarity=sim).loss
        assert torch.equal(plain, ref)
        assert torch.equal(ones, ref)
        assert torch.equal(ones_pair, ref)


def test_zero_weight_removes_a_negative_exactly():
    torch.manual_seed(1)
    q, p = torch.randn(3, 6, dtype=torch.float64), torch.randn(9, 6, dtype=torch.float64)
    w = torch.ones(3, 9, dtype=torch.float64)
    w[1, 4] = 0.0  # query 1's first hard negative (its positive is column 3)
    out = contrastive_loss(q, p, 3, 0.1, weights=w, similarity="dot")
    scores = similarity_scores(q, p, "dot")[1] / 0.1
    kept = torch.cat([scores[:4], scores[5:]])
    expected = torch.logsumexp(kept, 0) - scores[3]
    assert out.per_query[1].item() == pytest.approx(expected.item(), abs=1e-12)
    # and that passage gets no gradient from query 1's term
    p_req = p.clone().requires_grad_(True)
    contrastive_loss(q, p_req, 3, 0.1, weights=w, similarity="dot").per_query[1].backward()
    assert torch.count_nonzero(p_req.grad[4]).item() == 0
    assert torch.count_nonzero(p_req.grad[5]).item() > 0


def test_query_gradient_matches_closed_form():
    # For dot/temperature t: dL/dq_i = (sum_k softmax_ik p_k - p_pos(i)) / (B t)
    torch.manual_seed(2)
    q = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    p = torch.randn(6, 4, dtype=torch.float64)
    t = 0.2
    contrastive_loss(q, p, 2, t, similarity="dot").loss.backward()
    soft = torch.softmax(q.detach() @ p.T / t, dim=1)
    expected = (soft @ p - p[[0, 2, 4]]) / (3 * t)
    assert torch.allclose(q.grad, expected, atol=1e-12)


def test_gradcheck_weighted_cosine():
    torch.manual_seed(3)
    q = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    p = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    w = torch.rand(2, 6, dtype=torch.float64) + 0.1
    assert torch.autograd.gradcheck(lambda a, b: contrastive_loss(a, b, 3, 0.3, weights=w).loss, (q, p))


def test_query_weights_scale_per_query_terms():
    out = contrastive_loss(Q, P, 2, 1.0, similarity="dot", query_weights=torch.tensor([2.0, 0.0], dtype=torch.float64))
    assert out.loss.item() == pytest.approx((2 * 0.6265233750364456 + 0) / 2, abs=1e-12)


# Stage 3's three loss weightings on the same two queries; hard-negative weights omega = [[2.0], [0.5]] (group size 2:
# passage 1 is query 0's only hard negative, passage 3 query 1's). Plain terms L0 = 0.62652..., L1 = 1.00640...
OMEGA = torch.tensor([[2.0], [0.5]], dtype=torch.float64)


def _weighted(weighting, omega=OMEGA, q=Q, p=P, group_size=2, temperature=1.0, similarity="dot"):
    return contrastive_loss(q, p, group_size, temperature, similarity=similarity,
                            **hard_negative_weighting(omega, weighting))  # fmt: skip


def test_paper_weighting_by_hand():
    # L = 1/|B| sum over the triplets of omega(d-) L_MR(q) = (2.0 L0 + 0.5 L1) / 2
    #   = (2.0 x 0.6265233750364456 + 0.5 x 1.006408868078168) / 2 = 0.8781255920559876
    assert _weighted("paper").loss.item() == pytest.approx(0.8781255920559876, abs=1e-12)


def test_paper_weighting_normalises_by_the_number_of_triplets():
    # group size 3: each query has two hard negatives; query 0 weighs (1, 3) -> mean 2, query 1 (0.5, 0.5) -> 0.5,
    # so the loss is (2 L0' + 0.5 L1') / 2 over the plain per-query terms L' of this batch
    torch.manual_seed(4)
    q, p = torch.randn(2, 5, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
    plain = contrastive_loss(q, p, 3, 0.5, similarity="dot").per_query
    omega = torch.tensor([[1.0, 3.0], [0.5, 0.5]], dtype=torch.float64)
    out = _weighted("paper", omega, q, p, group_size=3, temperature=0.5)
    assert out.loss.item() == pytest.approx((2 * plain[0].item() + 0.5 * plain[1].item()) / 2, abs=1e-12)
    assert torch.equal(out.per_query, plain)  # the weights scale terms, not the softmax


def test_authors_weighting_by_hand():
    # the authors' code: InfoNCE of the batch x mean weight = (L0 + L1) / 2 x (2.0 + 0.5) / 2 = 1.0205826519466334
    assert _weighted("authors").loss.item() == pytest.approx(1.0205826519466334, abs=1e-12)


def test_softmax_weighting_by_hand():
    # per-passage weights [2.0 (q0's positive, as q1's in-batch negative), 2.0, 0.5 (q1's positive), 0.5]:
    #   L0 = -log(e^2 / (e^2 + 2.0 e^1 + 0.5 e^0 + 0.5 e^1)) = 0.6868102669405385
    #   L1 = -log(e^1 / (2.0 e^0 + 2.0 e^1 + e^1 + 0.5 e^0)) = 1.3660147638384048
    out = _weighted("softmax")
    assert out.per_query.tolist() == pytest.approx([0.6868102669405385, 1.3660147638384048], abs=1e-12)
    assert out.loss.item() == pytest.approx(1.0264125153894716, abs=1e-12)


@pytest.mark.parametrize("weighting", ["paper", "authors", "softmax"])
def test_every_weighting_with_unit_weights_is_plain_infonce(weighting):
    torch.manual_seed(5)
    q, p = torch.randn(4, 8), torch.randn(4 * 3, 8)
    for sim in ("cos", "dot"):
        ref = F.cross_entropy(similarity_scores(q, p, sim) / 0.05, positive_targets(4, 3))
        got = _weighted(weighting, torch.ones(4, 2), q, p, group_size=3, temperature=0.05, similarity=sim).loss
        assert torch.allclose(got, ref, rtol=0, atol=1e-6), (weighting, sim)


def test_weighting_errors_name_the_choices():
    with pytest.raises(ValueError, match=r"unknown loss weighting 'mean'; choose one of \('paper', 'authors', 'softmax'\)"):
        hard_negative_weighting(OMEGA, "mean")
    with pytest.raises(ValueError, match=r"shape \[B, G-1\], got \[2\]"):
        hard_negative_weighting(OMEGA[:, 0], "paper")
    with pytest.raises(ValueError, match="finite and >= 0"):
        hard_negative_weighting(-OMEGA, "softmax")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"group_size": 3}, "need 6 passages, got 4"),
        ({"weights": torch.ones(3, dtype=torch.float64)}, "per-passage weights must have 4"),
        ({"weights": -torch.ones(4, dtype=torch.float64)}, ">= 0"),
        ({"similarity": "l2"}, "unknown similarity 'l2'"),
        ({"temperature": 0.0}, "temperature must be > 0"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    args = {"group_size": 2, "temperature": 1.0, "similarity": "dot"} | kwargs
    with pytest.raises(ValueError, match=message):
        contrastive_loss(Q, P, **args)
