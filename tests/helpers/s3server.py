"""A real S3 server for tests: the package's SeaweedFS launcher (``vzkeep.seaweedfs``)."""

from vzkeep.seaweedfs import S3Server, S3ServerError, running_s3_server, start_s3_server, weed_binary

__all__ = ["S3Server", "S3ServerError", "running_s3_server", "start_s3_server", "weed_binary"]
