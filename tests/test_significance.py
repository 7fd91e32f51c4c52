"""The exact tests and the verdict line, on hand-made evaluation results with known values."""

from __future__ import annotations

import math

import pytest

from sparring.evaluation import binomial_test, compare_to_baseline, fisher_exact, verdict


@pytest.mark.parametrize("successes, n, p, expected", [
    (9, 10, 0.5, 0.021484375),      # 2 * (C(10,9) + C(10,10)) / 2**10
    (5, 10, 0.5, 1.0),
    (0, 12, 0.5, 2 / 2 ** 12),
    (3, 20, 0.3, 0.2204),           # R: binom.test(3, 20, 0.3)$p.value
    (0, 0, 0.5, 1.0),
])
def test_binomial_test_known_values(successes, n, p, expected):
    assert binomial_test(successes, n, p) == pytest.approx(expected, abs=1e-4)


@pytest.mark.parametrize("table, expected", [
    ((3, 1, 1, 3), 0.4857142857),   # Fisher's lady tasting tea
    ((8, 2, 1, 5), 0.0349650350),   # R: fisher.test(matrix(c(8, 1, 2, 5), 2))$p.value
    ((15, 5, 5, 15), 0.0038),
    ((10, 0, 0, 10), 2 / math.comb(20, 10)),
    ((0, 0, 0, 0), 1.0),
])
def test_fisher_exact_known_values(table, expected):
    assert fisher_exact(*table) == pytest.approx(expected, abs=1e-4)


def test_fisher_exact_is_symmetric_in_rows_and_columns():
    assert fisher_exact(7, 3, 2, 8) == pytest.approx(fisher_exact(2, 8, 7, 3))
    assert fisher_exact(7, 3, 2, 8) == pytest.approx(fisher_exact(7, 2, 3, 8))


def _result(wins, losses, by_role):
    return {"wins": wins, "losses": losses,
            "by_role": {role: {"games": games, "wins": w, "errors": errors} for role, (games, w, errors) in by_role.items()}}


def test_better_in_one_role_names_it_with_its_p_value():
    trained = _result(30, 10, {"attacker": (20, 15, 0), "defender": (20, 15, 0)})
    baseline = _result(0, 0, {"attacker": (20, 5, 0), "defender": (20, 14, 0)})
    evidence = compare_to_baseline(trained, baseline)
    attacker = evidence["roles"]["attacker"]
    assert attacker["win_rate"] == 0.75 and attacker["baseline_rate"] == 0.25
    assert attacker["p_value"] == pytest.approx(fisher_exact(15, 5, 5, 15))
    assert evidence["overall"]["p_value"] == pytest.approx(binomial_test(30, 40))
    assert evidence["verdict"] == ("better than the start model in the attacker role (win 75% vs 25%, p = 0.0038); "
                                   "no significant difference in the defender role (win 75% vs 70%, p = 1)")


def test_worse_is_called_worse():
    trained = _result(2, 20, {"attacker": (20, 1, 0), "defender": (20, 12, 0)})
    baseline = _result(0, 0, {"attacker": (20, 11, 0), "defender": (20, 12, 0)})
    assert compare_to_baseline(trained, baseline)["verdict"].startswith("worse than the start model in the attacker role")


def test_no_difference_gives_every_role_its_p_value():
    trained = _result(10, 10, {"attacker": (20, 6, 0), "defender": (20, 14, 0)})
    baseline = _result(0, 0, {"attacker": (20, 5, 0), "defender": (20, 15, 0)})
    line = compare_to_baseline(trained, baseline)["verdict"]
    assert line.startswith("no significant difference from the start model (attacker: win 30% vs 25%, p = ")
    assert "defender: win 70% vs 75%, p = 1" in line


def test_errors_leave_the_denominator():
    trained = _result(5, 0, {"attacker": (10, 5, 5), "defender": (10, 0, 10)})
    evidence = compare_to_baseline(trained, _result(0, 0, {"attacker": (10, 0, 0)}))
    assert evidence["roles"]["attacker"]["games"] == 5 and evidence["roles"]["attacker"]["win_rate"] == 1.0
    assert evidence["roles"]["attacker"]["p_value"] == pytest.approx(fisher_exact(5, 0, 0, 10))
    assert "p_value" not in evidence["roles"]["defender"]  # no baseline for it


def test_without_a_baseline_the_sign_test_decides():
    line = compare_to_baseline(_result(14, 2, {"attacker": (10, 7, 0), "defender": (10, 7, 0)}), None)["verdict"]
    assert line == f"better than the start model (14 wins, 2 losses, p = {binomial_test(14, 16):.2g})"
    assert verdict({}, {"wins": 3, "losses": 4, "p_value": 1.0}) == \
        "no significant difference from the start model (3 wins, 4 losses, p = 1)"
