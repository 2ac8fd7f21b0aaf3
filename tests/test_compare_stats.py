"""Paired comparison and agreement statistics against hand-computed cases."""

from __future__ import annotations

import pytest

from siuo_task.benchmark.stats import cohen_kappa, mcnemar_exact_p, paired_difference


def test_mcnemar_exact_hand_computed() -> None:
    # b=1, c=9: two-sided p = 2 * (C(10,0) + C(10,1)) / 2^10 = 22/1024.
    assert mcnemar_exact_p(1, 9) == pytest.approx(22 / 1024)
    assert mcnemar_exact_p(9, 1) == pytest.approx(22 / 1024)
    assert mcnemar_exact_p(5, 5) == 1.0
    assert mcnemar_exact_p(0, 0) == 1.0
    # b=0, c=6: 2 / 64.
    assert mcnemar_exact_p(0, 6) == pytest.approx(2 / 64)


def test_paired_difference_hand_computed() -> None:
    pairs = [(True, True)] * 10 + [(True, False)] * 6 + [(False, True)] * 2 + [(False, False)] * 12
    diff, low, high = paired_difference(pairs)
    # d = (6-2)/30; se = sqrt(8 - 16/30)/30 = 0.091084; d +- 1.96 se.
    assert diff == pytest.approx(4 / 30)
    assert low == pytest.approx(-0.045188, abs=1e-5)
    assert high == pytest.approx(0.311854, abs=1e-5)
    with pytest.raises(ValueError):
        paired_difference([])


def test_cohen_kappa_hand_computed() -> None:
    # 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no: po = .7, pe = .5*.6 + .5*.4 = .5, kappa = .4,
    # se = sqrt(.7*.3 / (50*.25)) = 0.129615.
    pairs = [(True, True)] * 20 + [(True, False)] * 5 + [(False, True)] * 10 + [(False, False)] * 15
    kappa, low, high = cohen_kappa(pairs)
    assert kappa == pytest.approx(0.4)
    assert low == pytest.approx(0.4 - 1.959964 * 0.129615, abs=1e-5)
    assert high == pytest.approx(0.4 + 1.959964 * 0.129615, abs=1e-5)


def test_kappa_edge_cases() -> None:
    assert cohen_kappa([]) == (None, None, None)
    assert cohen_kappa([(True, True)] * 5) == (None, None, None)  # chance agreement is 1
    perfect = [(True, True)] * 3 + [(False, False)] * 3
    assert cohen_kappa(perfect)[0] == pytest.approx(1.0)


def test_kappa_is_never_negative_zero() -> None:
    from siuo_task.benchmark.stats import agreement_of_pairs

    # Chance-level agreement whose kappa comes out as -8e-17 in floating point: it must print as
    # 0.0, not -0.0.
    pairs = [(True, False)] * 4 + [(False, False)] * 2
    result = agreement_of_pairs(pairs, "a", "b", "agreement")
    assert str(result["kappa"]) == "0.0"
