"""What the control-plane API and the controllers both know about the user's objects: the
kinds of record in the store, the shapes of the records one side writes and the other
reads, and the helpers both apply to them. It imports neither side, so neither has to
import the other to share a definition.

- `kinds`: the store's record kinds
- `endpoints`: an endpoint's desired state and how DescribeEndpoint shows what runs
- `failures`: one FailureReason fitter for every failed object
- `recommendations`: how an inference recommendation candidate is named
- `scaling`: Application Auto Scaling's store keys, tracked metrics and alarm namespaces
- `scaling_schedules`: Application Auto Scaling's scheduled-action expressions
- `transform_schedules`: modelhost's cron schedules that create transform jobs
"""
