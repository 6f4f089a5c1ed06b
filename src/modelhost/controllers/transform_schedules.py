"""The transform schedule controller: creates a transform job each time a schedule's cron
expression comes due (modelhost's CreateSchedule; Application Auto Scaling's scheduled
actions are run by the autoscaling controller).

Runs are keyed by their due time: the job for the run due at T is named
`<schedule>-<T>`, so a server that restarts between creating the job and recording the
run finds the job already there and does not create a second one. A server that was down
across several due times makes up one run (the latest), not all of them. With several
servers on one state store, the one holding the schedules' lease fires them all.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from modelhost.api import Context, transform_jobs
from modelhost.controllers.loop import ReconcileLoop
from modelhost.domain.kinds import TRANSFORM_JOB, TRANSFORM_SCHEDULE
from modelhost.domain.transform_schedules import job_request, next_run
from modelhost.errors import SageMakerError
from modelhost.storage import LoopStore, Ownership, lease

log = logging.getLogger(__name__)


class TransformScheduleController(ReconcileLoop):
    #: One lease for the whole loop: firing is cheap, and one owner fires each run once.
    LEASE = lease(TRANSFORM_SCHEDULE, "*")

    def __init__(self, context: Context, ownership: Ownership) -> None:
        super().__init__("schedule tick", context.settings.health_interval_s)
        self.context = context
        self.ownership = ownership
        self.store = LoopStore(context.store)

    async def step(self) -> None:
        if await self.ownership.claim([self.LEASE]):
            # store calls and CreateTransformJob only: off the loop
            await self.store.call(self.tick, datetime.now(UTC))

    def tick(self, now: datetime) -> None:
        """Fire every schedule that is due (blocking store calls: run off the loop)."""
        store = self.context.store
        for record in store.list(TRANSFORM_SCHEDULE):
            due = datetime.fromtimestamp(record["NextRunTime"], UTC)
            if due > now:
                continue
            # the latest due time not after now: one make-up run after downtime
            latest = due
            while (following := next_run(record["ScheduleExpression"], latest)) <= now:
                latest = following
            self._fire(record, latest)
            upcoming = next_run(record["ScheduleExpression"], now)

            def advance(r: dict[str, Any], upcoming: datetime = upcoming) -> dict[str, Any]:
                r["NextRunTime"] = round(upcoming.timestamp(), 3)
                return r

            store.modify(TRANSFORM_SCHEDULE, record["ScheduleName"], advance)

    def _fire(self, record: dict[str, Any], when: datetime) -> None:
        request = job_request(record, when)
        name = request["TransformJobName"]
        error = None
        if self.context.store.get(TRANSFORM_JOB, name) is None:
            try:
                transform_jobs.create_transform_job(self.context, request)
            except SageMakerError as exc:
                error = exc.message
                log.warning(
                    "schedule %s: could not create job %s: %s", record["ScheduleName"], name, error
                )

        def ran(r: dict[str, Any]) -> dict[str, Any]:
            r["LastRunTime"] = round(when.timestamp(), 3)
            r["LastTransformJobName"] = name
            if error is None:
                r.pop("LastError", None)
            else:
                r["LastError"] = error
            return r

        self.context.store.modify(TRANSFORM_SCHEDULE, record["ScheduleName"], ran)
