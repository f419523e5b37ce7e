"""LOCO rows of one candidate trained with other seeds: recorded beside seed 0, never ranked as
candidates of their own, summarised as a spread."""

from __future__ import annotations

import pytest

from training.report import XCOLS, loco_rows, report_body, seed_spread, seed_table
from training.runner import seeded_name


def folds(model: str, uar: float, **extra) -> list[dict]:
    return [{"model": model, "protocol": "cross_corpus", "corpus": c, "classes": "merged", "uar": uar,
             "accuracy": uar, "macro_f1": uar, "n_test": 10, "command": "python -m training loco ...",
             "room": 1, **extra} for c in XCOLS]


def seeded(base: str, seed: int, uar: float) -> list[dict]:
    return folds(seeded_name(base, seed), uar, seed=seed, seed_of=base)


def test_a_seed_run_gets_its_own_name_and_seed_zero_keeps_the_plain_one():
    assert seeded_name("m", 0) == "m" and seeded_name("m", 3) == "m seed 3"


def test_seed_rows_are_summarised_not_ranked_as_candidates():
    recs = folds("a", 0.50) + seeded("a", 1, 0.48) + seeded("a", 2, 0.52) + folds("b", 0.49)
    assert [r[0] for r in loco_rows(recs)] == ["a", "b"]
    assert seed_spread(recs) == {"a": pytest.approx({0: 0.50, 1: 0.48, 2: 0.52})}
    table = seed_table(recs)
    assert table[2].startswith("| a | 0.500 (seed 0), 0.480 (seed 1), 0.520 (seed 2) | **0.500** | 0.020 |")
    assert "0.040" in table[2]  # range
    assert "0.480 (seed 1)" in report_body(recs)
    from bench.render_quality import si_table

    readme = si_table(recs)
    assert "0.480 (seed 1)" in readme and "| a seed 1 |" not in readme  # summarised, not ranked


def test_a_seed_with_missing_folds_is_left_out_of_the_spread():
    recs = folds("a", 0.50) + seeded("a", 1, 0.40)[:-1] + seeded("a", 2, 0.52)
    assert set(seed_spread(recs)["a"]) == {0, 2}
    assert seed_table(folds("a", 0.5)) == []


def test_the_best_mark_goes_by_the_mean_over_seeds():
    from bench.render_quality import si_table

    recs = folds("a", 0.48) + seeded("a", 1, 0.52) + seeded("a", 2, 0.53) + folds("b", 0.50)
    table = si_table(recs)
    assert "| a |  | **0.480 (3 seeds: 0.510)** |" in table and "| b |  | 0.500 |" in table


def test_a_candidate_measured_with_other_seeds_only_shows_their_mean():
    from bench.render_quality import si_table

    si = {"model": "c", "protocol": "speaker_independent", "corpus": "all+", "classes": "merged", "uar": 0.7,
          "accuracy": 0.7, "macro_f1": 0.7, "val_uar": 0.7, "n_test": 10, "command": "python -m training run"}
    table = si_table(seeded("c", 1, 0.46) + seeded("c", 2, 0.47) + [si] + folds("b", 0.50))
    assert "| c |  | (2 seeds: 0.465) |" in table and "not measured" not in table
