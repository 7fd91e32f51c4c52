"""Is the trained model better than the one it started from? Exact tests and a one-line verdict.

Two questions, each answered with an exact two-sided test:

- **Per role** (e.g. "as the attacker"): the trained model's win share in that role against the
  starting model, compared with the starting model's own win share in that role against itself
  (a baseline played once per run). A role's win share depends on the game (Taboo may favour
  the defender), so 50% is no reference; the baseline is. Fisher's exact test on the 2x2 table
  (wins, non-wins) x (trained, baseline), as the samples are independent games.
- **Overall**: among the decided games between the two, does the trained model win more often
  than it loses? Both models play each role equally often, so under "no difference" each decided
  game is a fair coin: the exact binomial (sign) test of wins against losses.

For accuracy on held-out questions (SAIE) both models answer the same questions, so the test is
paired: McNemar's exact test, the binomial test of the questions only the trained model got right
against those only the start model got right (`compare_accuracy`).

A role is called better or worse when its p-value is below ``ALPHA`` (0.05; two roles are two
tests, so read a single p near 0.05 with care).
"""

from __future__ import annotations

import math
from typing import Any

from ..errors import ArgumentError
from ._wilson import rate, wilson_interval

ALPHA = 0.05
"""The significance level of the verdict."""
_TIES = 1 + 1e-7  # probabilities this close to the observed one count as equally extreme (as SciPy does)


def binomial_test(successes: int, n: int, p: float = 0.5) -> float:
    """The exact two-sided binomial test: the probability of an outcome no likelier than ``successes``.

    Example:
        >>> round(binomial_test(9, 10), 6)
        0.021484
        >>> binomial_test(5, 10)
        1.0
    """
    if n < 0 or not 0 <= successes <= n:
        raise ArgumentError(f"binomial_test needs 0 <= successes <= n, got successes={successes}, n={n}")
    if n == 0:
        return 1.0
    probabilities = [math.comb(n, k) * p ** k * (1 - p) ** (n - k) for k in range(n + 1)]
    observed = probabilities[successes]
    return min(1.0, sum(q for q in probabilities if q <= observed * _TIES))


def fisher_exact(a: int, b: int, c: int, d: int) -> float:
    """The two-sided p-value of Fisher's exact test on the table ``[[a, b], [c, d]]``.

    Rows are the two samples (e.g. trained, baseline), columns success and failure; the p-value
    sums the hypergeometric probabilities of every table with the same margins that is no likelier
    than the observed one.

    Example:
        >>> round(fisher_exact(8, 2, 1, 5), 4)
        0.035
        >>> fisher_exact(3, 3, 3, 3)
        1.0
    """
    if min(a, b, c, d) < 0:
        raise ArgumentError(f"fisher_exact needs counts >= 0, got {(a, b, c, d)}")
    row, column, n = a + b, a + c, a + b + c + d
    if n == 0:
        return 1.0
    low, high = max(0, column - (c + d)), min(row, column)
    total = math.comb(n, column)

    def probability(x: int) -> float:
        return math.comb(row, x) * math.comb(n - row, column - x) / total

    observed = probability(a)
    return min(1.0, sum(q for x in range(low, high + 1) if (q := probability(x)) <= observed * _TIES))


def compare_to_baseline(result: dict[str, Any], baseline: dict[str, Any] | None,
                        start: str = "the start model") -> dict[str, Any]:
    """Per-role and overall tests of an evaluation against the start model, and the verdict.

    Args:
        result (`dict`): ``winrate.json`` of the trained model against the start model.
        baseline (`dict | None`): ``winrate.json`` of the start model against itself (same
            protocol); without it only the overall test is made.
        start (`str`): how the verdict names the start model.

    Returns:
        `dict`: ``roles`` (per role: ``games``, ``wins``, ``win_rate``, ``win_ci``, and against the
        baseline ``baseline_games``, ``baseline_wins``, ``baseline_rate``, ``baseline_ci``,
        ``p_value``), ``overall`` (``wins``, ``losses``, ``p_value``) and ``verdict`` (one line).

    Example:
        >>> trained = {"wins": 30, "losses": 10, "by_role": {"attacker": {"games": 20, "wins": 15, "errors": 0},
        ...                                                 "defender": {"games": 20, "wins": 15, "errors": 0}}}
        >>> base = {"by_role": {"attacker": {"games": 20, "wins": 5, "errors": 0},
        ...                     "defender": {"games": 20, "wins": 14, "errors": 0}}}
        >>> compare_to_baseline(trained, base)["verdict"]
        'better than the start model in the attacker role (win 75% vs 25%, p = 0.0038); no significant difference in the defender role (win 75% vs 70%, p = 1)'
    """
    roles: dict[str, dict[str, Any]] = {}
    for role, tally in (result.get("by_role") or {}).items():
        judged = tally["games"] - tally.get("errors", 0)
        entry: dict[str, Any] = {"games": judged, "wins": tally["wins"], "win_rate": rate(tally["wins"], judged),
                                 "win_ci": list(wilson_interval(tally["wins"], judged))}
        reference = (baseline or {}).get("by_role", {}).get(role)
        if reference is not None:
            base_judged = reference["games"] - reference.get("errors", 0)
            entry |= {"baseline_games": base_judged, "baseline_wins": reference["wins"],
                      "baseline_rate": rate(reference["wins"], base_judged),
                      "baseline_ci": list(wilson_interval(reference["wins"], base_judged)),
                      "p_value": fisher_exact(tally["wins"], judged - tally["wins"],
                                              reference["wins"], base_judged - reference["wins"])}
        roles[role] = entry
    wins, losses = result.get("wins", 0), result.get("losses", 0)
    overall = {"wins": wins, "losses": losses, "p_value": binomial_test(wins, wins + losses)}
    return {"roles": roles, "overall": overall, "verdict": verdict(roles, overall, start)}


def compare_accuracy(trained: dict[str, bool], baseline: dict[str, bool],
                     start: str = "the start model") -> dict[str, Any]:
    """McNemar's exact test of two models' answers to the same questions, and the verdict.

    Args:
        trained (`dict[str, bool]`), baseline (`dict[str, bool]`): question (episode) id -> answered
            right, for the trained and the start model; only ids in both are compared.
        start (`str`): how the verdict names the start model.

    Returns:
        `dict`: ``questions``, ``trained_correct``, ``baseline_correct``, ``only_trained``,
        ``only_baseline``, ``p_value`` and ``verdict``.

    Example:
        >>> compare_accuracy({"a": True, "b": True, "c": False}, {"a": False, "b": True, "c": False})["verdict"]
        'no significant difference from the start model on held-out questions (accuracy 67% vs 33%, McNemar exact p = 1)'
    """
    shared = sorted(set(trained) & set(baseline))
    only_trained = sum(trained[q] and not baseline[q] for q in shared)
    only_baseline = sum(baseline[q] and not trained[q] for q in shared)
    p = binomial_test(only_trained, only_trained + only_baseline)
    mine, theirs = sum(trained[q] for q in shared), sum(baseline[q] for q in shared)
    figures = f"accuracy {rate(mine, len(shared)):.0%} vs {rate(theirs, len(shared)):.0%}, McNemar exact p = {p:.2g}"
    if p < ALPHA:
        line = f"{'better' if only_trained > only_baseline else 'worse'} than {start} on held-out questions ({figures})"
    else:
        line = f"no significant difference from {start} on held-out questions ({figures})"
    return {"questions": len(shared), "trained_correct": mine, "baseline_correct": theirs,
            "only_trained": only_trained, "only_baseline": only_baseline, "p_value": p, "verdict": line}


def verdict(roles: dict[str, dict[str, Any]], overall: dict[str, Any], start: str = "the start model") -> str:
    """One line: in which roles the trained model is better or worse than ``start``, with p-values."""
    tested = {role: entry for role, entry in roles.items() if "p_value" in entry}
    if not tested:
        p = overall["p_value"]
        if p < ALPHA:
            side = "better" if overall["wins"] > overall["losses"] else "worse"
            return f"{side} than {start} ({overall['wins']} wins, {overall['losses']} losses, p = {p:.2g})"
        return f"no significant difference from {start} ({overall['wins']} wins, {overall['losses']} losses, p = {p:.2g})"
    found, alike = [], []
    for role, entry in tested.items():
        figures = f"{entry['win_rate']:.0%} vs {entry['baseline_rate']:.0%}, p = {entry['p_value']:.2g}"
        if entry["p_value"] < ALPHA:
            side = "better" if entry["win_rate"] > entry["baseline_rate"] else "worse"
            found.append(f"{side} than {start} in the {role} role (win {figures})")
        else:
            alike.append((role, figures))
    if not found:
        return f"no significant difference from {start} (" + "; ".join(f"{r}: win {f}" for r, f in alike) + ")"
    rest = [f"no significant difference in the {role} role (win {figures})" for role, figures in alike]
    return "; ".join(found + rest)


__all__ = ["ALPHA", "binomial_test", "compare_accuracy", "compare_to_baseline", "fisher_exact", "verdict"]
