"""The inference recommender: load-test a model on two instance types with sample
payloads and print the cheapest one that meets a latency bound.

    python examples/recommender.py       # against MODELHOST_URL; takes about a minute
"""

from __future__ import annotations

import time

from _common import ROLE, client, iris_joblib, put, tarball


def main() -> None:
    sm = client("sagemaker")
    url = put("s3://examples/recommender/model.tar.gz", tarball({"model.joblib": iris_joblib()}))
    payloads = put(
        "s3://examples/recommender/payloads.tar.gz",
        tarball({"a.csv": b"5.1,3.5,1.4,0.2\n", "b.csv": b"6.7,3.0,5.2,2.3\n"}),
    )
    sm.create_model(
        ModelName="example-recommender",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": "modelhost/sklearn", "ModelDataUrl": url},
    )
    job = f"example-recommender-{int(time.time())}"
    try:
        sm.create_inference_recommendations_job(
            JobName=job,
            JobType="Advanced",
            RoleArn=ROLE,
            InputConfig={
                "ModelName": "example-recommender",
                "ContainerConfig": {
                    "PayloadConfig": {
                        "SamplePayloadUrl": payloads,
                        "SupportedContentTypes": ["text/csv"],
                    }
                },
                "EndpointConfigurations": [
                    {"InstanceType": "ml.c5.large"},
                    {"InstanceType": "ml.m5.large"},
                ],
                "TrafficPattern": {
                    "TrafficType": "PHASES",
                    "Phases": [
                        {"InitialNumberOfUsers": 1, "SpawnRate": 0, "DurationInSeconds": 2},
                        {"InitialNumberOfUsers": 2, "SpawnRate": 0, "DurationInSeconds": 2},
                    ],
                },
            },
            StoppingConditions={
                "ModelLatencyThresholds": [{"Percentile": "P95", "ValueInMilliseconds": 500}]
            },
        )
        while (described := sm.describe_inference_recommendations_job(JobName=job))[
            "Status"
        ] not in ("COMPLETED", "FAILED", "STOPPED"):
            time.sleep(1)
        if described["Status"] != "COMPLETED":
            raise SystemExit(f"{job}: {described['Status']} {described.get('FailureReason')}")
        for recommendation in described["InferenceRecommendations"]:
            metrics = recommendation["Metrics"]
            print(
                recommendation["EndpointConfiguration"]["InstanceType"],
                f"{metrics['MaxInvocations']} invocations/min",
                f"P95 {metrics['ModelLatency']} ms",
                f"${metrics['CostPerHour']:.3f}/hour",
            )
    finally:
        sm.delete_model(ModelName="example-recommender")


if __name__ == "__main__":
    main()
