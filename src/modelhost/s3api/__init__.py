"""The embedded object store's S3 API: `rclone serve s3` over `<data-dir>/objects`,
supervised by the server and reached through its own port, so a client that only knows
`AWS_ENDPOINT_URL` uploads models and reads results where the rest of modelhost reads
them (`s3://bucket/key` is `<data-dir>/objects/bucket/key` on both sides)."""

from modelhost.s3api.proxy import S3Proxy, signed_service
from modelhost.s3api.supervisor import RcloneS3

__all__ = ["RcloneS3", "S3Proxy", "signed_service"]
