"""The kinds of record the state store holds, one name per user object.

The API writes these records and the controllers read and update them; both name a kind
from here so that the two sides cannot drift apart. The values are the store's table keys
and must not change (a running server's store already holds records under them).
"""

from __future__ import annotations

MODEL = "model"
ENDPOINT_CONFIG = "endpoint_config"
ENDPOINT = "endpoint"
TRANSFORM_JOB = "transform_job"
RECOMMENDATION_JOB = "recommendation_job"
#: modelhost's own cron schedules that create transform jobs (CreateSchedule).
TRANSFORM_SCHEDULE = "schedule"
SCALABLE_TARGET = "scalable_target"
SCALING_POLICY = "scaling_policy"
#: Application Auto Scaling scheduled actions (PutScheduledAction).
SCHEDULED_ACTION = "scheduled_action"
SCALING_ACTIVITY = "scaling_activity"
METRIC_ALARM = "metric_alarm"
#: The model registry: package groups and the (versioned or unversioned) packages.
MODEL_PACKAGE_GROUP = "model_package_group"
MODEL_PACKAGE = "model_package"
#: SageMaker inference components: models hosted on an endpoint's model-less variant.
INFERENCE_COMPONENT = "inference_component"

#: Every kind, for what copies a whole store (`modelhost state migrate`).
ALL = (
    MODEL,
    ENDPOINT_CONFIG,
    ENDPOINT,
    TRANSFORM_JOB,
    RECOMMENDATION_JOB,
    TRANSFORM_SCHEDULE,
    SCALABLE_TARGET,
    SCALING_POLICY,
    SCHEDULED_ACTION,
    SCALING_ACTIVITY,
    METRIC_ALARM,
    MODEL_PACKAGE_GROUP,
    MODEL_PACKAGE,
    INFERENCE_COMPONENT,
)
#: The kinds SageMaker names uniquely regardless of case: created with `fold_case`.
CASE_INSENSITIVE = (
    MODEL,
    ENDPOINT_CONFIG,
    ENDPOINT,
    TRANSFORM_JOB,
    RECOMMENDATION_JOB,
    TRANSFORM_SCHEDULE,
    INFERENCE_COMPONENT,
)
