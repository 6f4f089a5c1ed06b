"""The SageMaker, Application Auto Scaling, CloudWatch and modelhost operations modelhost
implements, by wire name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from modelhost.api import (
    alarms,
    endpoint_configs,
    endpoints,
    inference_components,
    logs,
    metric_data,
    model_packages,
    models,
    recommendations,
    scalable_targets,
    scaling_activities,
    scaling_policies,
    scheduled_actions,
    search,
    tags,
    transform_jobs,
    transform_schedules,
)
from modelhost.api.context import Context

Operation = Callable[[Context, dict[str, Any]], dict[str, Any]]

SAGEMAKER_OPERATIONS: dict[str, Operation] = {
    "CreateModel": models.create_model,
    "DescribeModel": models.describe_model,
    "ListModels": models.list_models,
    "DeleteModel": models.delete_model,
    "CreateEndpointConfig": endpoint_configs.create_endpoint_config,
    "DescribeEndpointConfig": endpoint_configs.describe_endpoint_config,
    "ListEndpointConfigs": endpoint_configs.list_endpoint_configs,
    "DeleteEndpointConfig": endpoint_configs.delete_endpoint_config,
    "CreateEndpoint": endpoints.create_endpoint,
    "DescribeEndpoint": endpoints.describe_endpoint,
    "ListEndpoints": endpoints.list_endpoints,
    "UpdateEndpoint": endpoints.update_endpoint,
    "UpdateEndpointWeightsAndCapacities": endpoints.update_endpoint_weights_and_capacities,
    "DeleteEndpoint": endpoints.delete_endpoint,
    "CreateInferenceComponent": inference_components.create_inference_component,
    "DescribeInferenceComponent": inference_components.describe_inference_component,
    "ListInferenceComponents": inference_components.list_inference_components,
    "UpdateInferenceComponent": inference_components.update_inference_component,
    "UpdateInferenceComponentRuntimeConfig": (
        inference_components.update_inference_component_runtime_config
    ),
    "DeleteInferenceComponent": inference_components.delete_inference_component,
    "CreateTransformJob": transform_jobs.create_transform_job,
    "DescribeTransformJob": transform_jobs.describe_transform_job,
    "ListTransformJobs": transform_jobs.list_transform_jobs,
    "StopTransformJob": transform_jobs.stop_transform_job,
    "CreateInferenceRecommendationsJob": recommendations.create_inference_recommendations_job,
    "DescribeInferenceRecommendationsJob": recommendations.describe_inference_recommendations_job,
    "ListInferenceRecommendationsJobs": recommendations.list_inference_recommendations_jobs,
    "StopInferenceRecommendationsJob": recommendations.stop_inference_recommendations_job,
    "ListInferenceRecommendationsJobSteps": (
        recommendations.list_inference_recommendations_job_steps
    ),
    "CreateModelPackageGroup": model_packages.create_model_package_group,
    "DescribeModelPackageGroup": model_packages.describe_model_package_group,
    "ListModelPackageGroups": model_packages.list_model_package_groups,
    "DeleteModelPackageGroup": model_packages.delete_model_package_group,
    "CreateModelPackage": model_packages.create_model_package,
    "DescribeModelPackage": model_packages.describe_model_package,
    "ListModelPackages": model_packages.list_model_packages,
    "UpdateModelPackage": model_packages.update_model_package,
    "DeleteModelPackage": model_packages.delete_model_package,
    "Search": search.search,
    "AddTags": tags.add_tags,
    "ListTags": tags.list_tags,
    "DeleteTags": tags.delete_tags,
}

AUTOSCALING_OPERATIONS: dict[str, Operation] = {
    "RegisterScalableTarget": scalable_targets.register_scalable_target,
    "DescribeScalableTargets": scalable_targets.describe_scalable_targets,
    "DeregisterScalableTarget": scalable_targets.deregister_scalable_target,
    "PutScalingPolicy": scaling_policies.put_scaling_policy,
    "DescribeScalingPolicies": scaling_policies.describe_scaling_policies,
    "DeleteScalingPolicy": scaling_policies.delete_scaling_policy,
    "PutScheduledAction": scheduled_actions.put_scheduled_action,
    "DescribeScheduledActions": scheduled_actions.describe_scheduled_actions,
    "DeleteScheduledAction": scheduled_actions.delete_scheduled_action,
    "DescribeScalingActivities": scaling_activities.describe_scaling_activities,
    "TagResource": scalable_targets.tag_resource,
    "UntagResource": scalable_targets.untag_resource,
    "ListTagsForResource": scalable_targets.list_tags_for_resource,
}

CLOUDWATCH_OPERATIONS: dict[str, Operation] = {
    "PutMetricAlarm": alarms.put_metric_alarm,
    "DescribeAlarms": alarms.describe_alarms,
    "DescribeAlarmsForMetric": alarms.describe_alarms_for_metric,
    "DeleteAlarms": alarms.delete_alarms,
    "GetMetricData": metric_data.get_metric_data,
    "GetMetricStatistics": metric_data.get_metric_statistics,
    "ListMetrics": metric_data.list_metrics,
    "PutMetricData": metric_data.put_metric_data,
}

# modelhost's own operations (X-Amz-Target: Modelhost.<Operation>), modelled in
# data/modelhost/*/service-2.json.
MODELHOST_OPERATIONS: dict[str, Operation] = {
    "CreateSchedule": transform_schedules.create_schedule,
    "DescribeSchedule": transform_schedules.describe_schedule,
    "ListSchedules": transform_schedules.list_schedules,
    "DeleteSchedule": transform_schedules.delete_schedule,
}

# CloudWatch Logs (X-Amz-Target: Logs_20140328.<Operation>) over the instances' log files.
LOGS_OPERATIONS: dict[str, Operation] = {
    "DescribeLogGroups": logs.describe_log_groups,
    "DescribeLogStreams": logs.describe_log_streams,
    "GetLogEvents": logs.get_log_events,
    "FilterLogEvents": logs.filter_log_events,
}
