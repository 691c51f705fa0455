"""Sensors and schedules: new inbox folders become partitions and runs; a daily re-export."""

import json

from dagster import (
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    SensorEvaluationContext,
    SensorResult,
    SkipReason,
    schedule,
    sensor,
)

from assets.jobs import process_batch_job, reexport_job, release_job
from assets.partitions import BATCHES, batches
from qwen_dataset.store.inbox import scan_inbox
from resources.database import AnnotationDatabaseResource
from resources.storage import StorageResource

INBOX_SETTLE_SECONDS = 60.0


@sensor(
    job=process_batch_job,
    minimum_interval_seconds=30,
    default_status=DefaultSensorStatus.RUNNING,
    description="Turns each new complete `inbox/<batch>/` folder into a batch partition and one run.",
)
def inbox_sensor(context: SensorEvaluationContext, storage: StorageResource) -> SensorResult | SkipReason:
    scan = scan_inbox(storage.layout().inbox, settle_seconds=INBOX_SETTLE_SECONDS)
    for name in (n for n in scan.invalid if not n.startswith(".")):  # ".upload-*": an upload in progress
        context.log.warning(
            f"inbox folder {name!r} is not a valid batch name (letters, digits, '.', '_', '-'; max 128): rename it"
        )
    known = set(context.instance.get_dynamic_partitions(BATCHES))
    new = [name for name in scan.ready if name not in known]
    if not new:
        return SkipReason(f"no new complete batch ({len(scan.waiting)} still being written)")
    return SensorResult(
        # The run key is the batch: a sensor re-evaluation never launches the same batch twice.
        run_requests=[RunRequest(partition_key=name, run_key=f"inbox:{name}") for name in new],
        dynamic_partitions_requests=[batches.build_add_request(new)],
    )


@sensor(
    job=reexport_job,
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description=(
        "Reruns human_corrections, qc_report and exports of every batch whose reviews were finalized, "
        "or whose quality-gate waivers were recorded or revoked."
    ),
)
def corrections_sensor(
    context: SensorEvaluationContext, annotation_db: AnnotationDatabaseResource
) -> SensorResult | SkipReason:
    from qwen_dataset.db.queries import final_fingerprints  # SQL helpers load with the sensor, not the location
    from qwen_dataset.db.waivers import waiver_fingerprints

    seen = json.loads(context.cursor) if context.cursor else {}
    engine = annotation_db.engine()
    current = final_fingerprints(engine)
    # A waiver recorded or revoked changes what the gate decides: rerun the batch as for a review.
    for batch, waivers in waiver_fingerprints(engine).items():
        current[batch] = f"{current.get(batch, 'none')}|{waivers}"
    # A batch whose last final row was sent back disappears from `current`: that is a change too.
    changed = {
        batch: current.get(batch, "none") for batch in set(seen) | set(current) if seen.get(batch) != current.get(batch)
    }
    if not changed:
        return SkipReason("no review finalized or sent back since the last check")
    known = set(context.instance.get_dynamic_partitions(BATCHES))
    return SensorResult(
        # One run per batch and state of its final annotations.
        run_requests=[
            RunRequest(partition_key=batch, run_key=f"reviews:{batch}:{fingerprint}")
            for batch, fingerprint in sorted(changed.items())
            if batch in known
        ],
        cursor=json.dumps(current, sort_keys=True),
    )


@schedule(
    job=reexport_job,
    cron_schedule="0 3 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly: re-read human corrections and re-export every batch.",
)
def nightly_reexport(context: ScheduleEvaluationContext):
    day = context.scheduled_execution_time.strftime("%Y-%m-%d")
    for name in context.instance.get_dynamic_partitions(BATCHES):
        yield RunRequest(partition_key=name, run_key=f"reexport:{day}:{name}")


@schedule(
    job=release_job,
    cron_schedule="0 5 * * *",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Nightly, after the re-export: a release over every batch that passed its gates (no-op if unchanged).",
)
def nightly_release(context: ScheduleEvaluationContext):
    return RunRequest(run_key=f"release:{context.scheduled_execution_time:%Y-%m-%d}")
