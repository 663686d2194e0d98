"""StateBucket: the versioned, private bucket of Pulumi's self-managed backend (DESIGN.md "State").

Only plain S3 resources of pulumi-minio (bucket, versioning, lifecycle), so the same program works on
SeaweedFS and MinIO: no resource that needs MinIO's admin API, such as a quota or IAM users
(aminueza/terraform-provider-minio `minio/resource_minio_s3_bucket.go` sets a quota through `madmin`).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pulumi
import pulumi_minio as minio

from vzkeep.config import StateBucketSettings


@dataclass
class StateBucketArgs:
    settings: StateBucketSettings
    # The S3 server that must run before the bucket can be created through its API (ObjectStore).
    depends_on: list[pulumi.Resource] = field(default_factory=list)


class StateBucket(pulumi.ComponentResource):
    bucket_name: pulumi.Output[str]

    def __init__(
        self, name: str, args: StateBucketArgs, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("vzkeep:backup:StateBucket", name, None, opts)
        settings = args.settings
        self.bucket = minio.S3Bucket(
            f"{name}-bucket",
            bucket=settings.bucket,
            acl="private",
            # Losing the bucket loses every stack's history: it must be removed deliberately.
            opts=pulumi.ResourceOptions(parent=self, protect=True, depends_on=args.depends_on),
        )
        child = pulumi.ResourceOptions(parent=self, depends_on=[self.bucket])
        self.versioning = minio.S3BucketVersioning(
            f"{name}-versioning",
            bucket=self.bucket.bucket,
            versioning_configuration=minio.S3BucketVersioningVersioningConfigurationArgs(status="Enabled"),
            opts=child,
        )
        self.lifecycle = minio.IlmPolicy(
            f"{name}-lifecycle",
            bucket=self.bucket.bucket,
            rules=[minio.IlmPolicyRuleArgs(
                id="expire-noncurrent-state",
                status="Enabled",
                noncurrent_version_expiration_days=settings.noncurrent_expiration_days,
            )],
            opts=child,
        )
        self.bucket_name = self.bucket.bucket
        self.backend_url = pulumi.Output.concat(
            "s3://", self.bucket.bucket, f"?endpoint={settings.endpoint}&s3ForcePathStyle=true",
            "" if settings.ssl else "&disableSSL=true", f"&region={settings.region}",
        )
        self.register_outputs({"bucket": self.bucket_name, "backendUrl": self.backend_url})


def minio_provider(settings: StateBucketSettings, secret_key: pulumi.Input[str]) -> minio.Provider:
    """An explicit provider for the S3 server; the secret key stays a Pulumi secret."""
    return minio.Provider(
        "s3-state",
        minio_server=settings.endpoint,
        minio_user=settings.access_key,
        minio_password=secret_key,
        minio_ssl=settings.ssl,
        minio_region=settings.region,
    )
