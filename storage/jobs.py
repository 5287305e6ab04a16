"""Scheduled job runs: one row per (job, key), claimed by INSERT so two schedulers never run the same work."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Mapped, Session, mapped_column

from storage.base import Base, enum_column, utcnow
from storage.enums import JobStatus


class JobRun(Base):
    __tablename__ = "job_runs"
    __table_args__ = (sa.UniqueConstraint("job", "key", name="uq_job_runs_job_key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job: Mapped[str] = mapped_column(sa.String(64))
    key: Mapped[str] = mapped_column(sa.String(200))  # the day, month or mailing the run is for
    status: Mapped[JobStatus] = mapped_column(enum_column(JobStatus), default=JobStatus.RUNNING)
    owner: Mapped[str] = mapped_column(sa.String(200), default="")
    lease_until: Mapped[dt.datetime] = mapped_column()
    started_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    finished_at: Mapped[dt.datetime | None] = mapped_column()
    attempts: Mapped[int] = mapped_column(default=1)
    result: Mapped[dict[str, Any]] = mapped_column(default=dict)
    error: Mapped[str] = mapped_column(sa.Text, default="")


def claim_job(session: Session, job: str, key: str, owner: str, lease: dt.timedelta) -> bool:
    """Claim the run of ``job`` for ``key`` and commit the claim; False when another run has it or finished it.

    The first claim is an INSERT that the unique (job, key) constraint lets only one scheduler win, on
    SQLite and PostgreSQL alike. A run that failed, or whose scheduler died (its lease ran out), is
    claimed again by a conditional UPDATE, which also only one scheduler can win.
    """
    now = utcnow()
    try:
        session.add(JobRun(job=job, key=key, owner=owner, lease_until=now + lease, started_at=now))
        session.commit()
        return True
    except IntegrityError:
        session.rollback()
    retry = sa.or_(JobRun.status.in_([JobStatus.FAILED, JobStatus.WAITING]),
                   sa.and_(JobRun.status == JobStatus.RUNNING, JobRun.lease_until < now))
    result = session.execute(
        sa.update(JobRun)
        .where(JobRun.job == job, JobRun.key == key, retry)
        .values(status=JobStatus.RUNNING, owner=owner, lease_until=now + lease, started_at=now,
                attempts=JobRun.attempts + 1, error="")
        .execution_options(synchronize_session=False)
    )
    session.commit()
    return result.rowcount == 1


def finish_job(session: Session, job: str, key: str, owner: str, result: dict[str, Any]) -> None:
    """Mark this owner's run done; a done run is never claimed again."""
    _settle(session, job, key, owner, JobStatus.DONE, result=result)


def pause_job(session: Session, job: str, key: str, owner: str, result: dict[str, Any]) -> None:
    """Mark this owner's run as partly done; the next trigger may claim it and go on."""
    _settle(session, job, key, owner, JobStatus.WAITING, result=result)


def fail_job(session: Session, job: str, key: str, owner: str, error: str) -> None:
    """Mark this owner's run failed, keeping the reason; the next trigger may claim it again."""
    _settle(session, job, key, owner, JobStatus.FAILED, error=error[:4000])


def _settle(session: Session, job: str, key: str, owner: str, status: JobStatus, **values: Any) -> None:
    session.execute(
        sa.update(JobRun)
        .where(JobRun.job == job, JobRun.key == key, JobRun.owner == owner)
        .values(status=status, finished_at=utcnow(), **values)
    )
    session.commit()


def find_run(session: Session, job: str, key: str) -> JobRun | None:
    return session.scalar(sa.select(JobRun).where(JobRun.job == job, JobRun.key == key))
