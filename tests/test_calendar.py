"""Business days, the third-Tuesday call across daylight saving time, and the scheduler's triggers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

from bot.scheduler import Jobs, build_scheduler, monthly_due
from bot.settings import Settings
from workflows.calendar import call_reminder_day, call_window, first_business_day, is_business_day, third_tuesday
from workflows.formatting import format_dates, format_pdus
from workflows.newsletter import call_when
from workflows.reminders import NagPolicy

DENVER = ZoneInfo("America/Denver")
UTC = dt.timezone.utc


def test_it_counts_monday_to_friday_as_business_days():
    assert [is_business_day(dt.date(2026, 11, d)) for d in range(16, 23)] == [True] * 5 + [False] * 2


def test_it_finds_the_first_business_day_of_a_month():
    assert first_business_day(2026, 8) == dt.date(2026, 8, 3)  # Aug 1 is a Saturday
    assert first_business_day(2026, 12) == dt.date(2026, 12, 1)
    assert first_business_day(2027, 5) == dt.date(2027, 5, 3)


def test_it_runs_monthly_jobs_from_the_first_business_day_for_a_week():
    assert not monthly_due(dt.date(2026, 7, 31))
    assert monthly_due(dt.date(2026, 8, 3)) and monthly_due(dt.date(2026, 8, 7))
    assert not monthly_due(dt.date(2026, 8, 8))  # a Saturday
    assert not monthly_due(dt.date(2026, 8, 10))


def test_it_finds_the_third_tuesday_and_reminds_the_day_before():
    assert third_tuesday(2026, 11) == dt.date(2026, 11, 17)
    assert third_tuesday(2026, 9) == dt.date(2026, 9, 15)  # Sep 1 is itself a Tuesday
    assert third_tuesday(2027, 6) == dt.date(2027, 6, 15)
    assert call_reminder_day(2026, 11) == dt.date(2026, 11, 16)


def test_it_places_the_call_at_half_past_three_mountain_across_dst():
    winter_start, winter_end = call_window(2027, 1, DENVER)
    summer_start, _ = call_window(2027, 3, DENVER)  # DST began on Sunday, March 14, 2027
    after_fall_back, _ = call_window(2026, 11, DENVER)  # DST ended on November 1, 2026
    assert winter_start.astimezone(UTC) == dt.datetime(2027, 1, 19, 22, 30, tzinfo=UTC)
    assert winter_end.astimezone(UTC) == dt.datetime(2027, 1, 19, 23, 30, tzinfo=UTC)
    assert summer_start.astimezone(UTC) == dt.datetime(2027, 3, 16, 21, 30, tzinfo=UTC)
    assert after_fall_back.astimezone(UTC) == dt.datetime(2026, 11, 17, 22, 30, tzinfo=UTC)
    assert call_when(*call_window(2027, 3, DENVER)) == "Tuesday, March 16, 3:30-4:30 p.m. MDT"
    assert call_when(*call_window(2026, 11, DENVER)) == "Tuesday, November 17, 3:30-4:30 p.m. MST"


def test_it_fires_the_morning_nag_at_eight_mountain_on_business_days_across_dst(tmp_path):
    settings = Settings(PDUBOT_VAR_DIR=str(tmp_path))
    scheduler = build_scheduler(Jobs(settings, None, lambda: None, b"k"), settings)  # type: ignore[arg-type]
    trigger = scheduler.get_job("certificate_nag").trigger
    friday_before_dst = dt.datetime(2027, 3, 12, 9, 0, tzinfo=DENVER)
    monday = trigger.get_next_fire_time(None, friday_before_dst)
    assert monday == dt.datetime(2027, 3, 15, 8, 0, tzinfo=DENVER)
    assert monday.astimezone(UTC).hour == 14  # MDT; it was 15:00 UTC the week before
    week_before = trigger.get_next_fire_time(None, dt.datetime(2027, 3, 5, 9, 0, tzinfo=DENVER))
    assert week_before.astimezone(UTC) == dt.datetime(2027, 3, 8, 15, 0, tzinfo=UTC)
    assert scheduler._job_defaults["coalesce"] is True
    assert scheduler._job_defaults["misfire_grace_time"] == 6 * 3600


def test_it_computes_the_nag_stages_then_monthly():
    policy = NagPolicy()
    assert [policy.stage_for(d) for d in (2, 3, 13, 14, 29, 30, 59, 60, 89, 90, 400)] == [
        None, 3, 3, 14, 14, 30, 30, 60, 60, 90, 390]


def test_it_writes_pdus_as_recorded_never_rounding_up():
    assert [format_pdus(Decimal(v)) for v in ("3.50", "3.00", "0.75", "30", "12.25")] == [
        "3.5", "3", "0.75", "30", "12.25"]
    assert format_dates(dt.date(2025, 11, 1), dt.date(2026, 10, 31)) == "Nov 1, 2025 - Oct 31, 2026"
