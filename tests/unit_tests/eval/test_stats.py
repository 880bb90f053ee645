import pytest

from langchain_moa.eval import stats


def test_two_values_by_hand() -> None:
    # A resample of [0, 100] has mean 0, 50 or 100 with chances 1/4, 1/2, 1/4: among 1,000
    # resamples over 2.5% are 0 and over 2.5% are 100, so those are the percentiles.
    assert stats.mean_interval([0.0, 100.0]) == [0.0, 100.0]


def test_no_spread_no_width() -> None:
    assert stats.mean_interval([3.0] * 5) == [3.0, 3.0]
    assert stats.mean_interval([7.5]) == [7.5, 7.5]
    assert stats.mean_interval([]) is None


def test_a_large_sample_is_near_the_normal_interval() -> None:
    # Mean 50, standard error sqrt(50 * 50 / 400) = 2.5: about 45.1 to 54.9.
    low, high = stats.mean_interval([0.0, 100.0] * 200)
    assert low == pytest.approx(45.1, abs=1)
    assert high == pytest.approx(54.9, abs=1)


def test_seeded_and_deterministic() -> None:
    values = [float(v % 7) for v in range(50)]
    assert stats.mean_interval(values) == stats.mean_interval(values)
    assert stats.mean_interval(values, seed=1) != stats.mean_interval(values)


def test_groups_are_resampled_whole() -> None:
    # Two groups: resamples pool [0, 0, 0, 0], [0, 0, 100] or [100, 100]; the percentiles
    # are the extremes, and nothing but the three pooled means can occur.
    assert stats.pooled_mean_interval([[0.0, 0.0], [100.0]]) == [0.0, 100.0]
    assert stats.pooled_mean_interval([[2.0, 4.0], [3.0]]) == [3.0, 3.0]


def test_undefined_resamples_are_left_out() -> None:
    def first_positive(sample):
        positive = [v for v in sample if v > 0]
        return positive[0] if positive else None

    assert stats.bootstrap_interval([0.0, 5.0], first_positive) == [5.0, 5.0]
    assert stats.bootstrap_interval([0.0], first_positive) is None
