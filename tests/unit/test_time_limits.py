"""Time limits as Slurm and people write them, read one way by the form and the CLI."""

import pytest

from rosetta.core.units import format_minutes, parse_time_limit_minutes


@pytest.mark.parametrize(
    ("said", "minutes"),
    [
        ("90", 90),  # a bare number is minutes, as for sbatch
        ("90m", 90),
        ("45min", 45),
        ("2h", 120),
        ("2 h", 120),
        ("1h30m", 90),
        ("1d", 1440),
        ("90s", 2),  # seconds round up to whole minutes, as Slurm does
        ("30:30", 31),  # MINUTES:SECONDS
        ("1:00:00", 60),  # HOURS:MINUTES:SECONDS
        ("1-12", 2160),  # DAYS-HOURS
        ("1-12:30", 2190),  # DAYS-HOURS:MINUTES
        ("1-12:00:00", 2160),  # DAYS-HOURS:MINUTES:SECONDS
    ],
)
def test_time_limits_as_slurm_and_people_write_them(said, minutes):
    assert parse_time_limit_minutes(said) == minutes


@pytest.mark.parametrize("said", ["", "0", "soon", "h", "-5", "1:2:3:4", "2x", "1-", "400d"])
def test_what_is_no_time_limit_is_refused_with_examples(said):
    with pytest.raises(ValueError, match=r"is (not a time limit \(e\.g\. 90, 90m, 2h, 1h30m or 1-12:00:00\)|longer)"):
        parse_time_limit_minutes(said)


def test_minutes_read_as_people_say_them():
    assert [format_minutes(m) for m in (45, 60, 90, 1440, 2190)] == [
        "45 min",
        "1 h",
        "1 h 30 min",
        "1 d",
        "1 d 12 h 30 min",
    ]
