"""The Pulumi DIY backend URL (`s3://bucket/prefix?endpoint=...`) and the boto3 client built from it.

The URL is parsed the way `pulumi login` does it, so the value the user already has in
`PULUMI_BACKEND_URL` works unchanged (pulumi `pkg/backend/diy/backend.go`, gocloud `blob/s3blob`):

- the host is the bucket; a path becomes a key prefix ending in `/` (pulumi `pkg/backend/diy/backend.go`
  trims the leading `/` and adds the trailing one before `blob.PrefixedBucket`);
- a `prefix=` query parameter is gocloud's generic prefix (gocloud `blob.go` `applyPrefixParam`); it is
  applied below the path prefix, so the final key is `<prefix param><path prefix><key>`;
- the remaining parameters are those of gocloud's s3blob opener and `aws.V2ConfigFromURLParams`, after
  Pulumi's own rewrite of the legacy SDK-v1 names (pulumi `legacy_s3_params_test.go`): `disableSSL` means
  `disable_https`, a bare `endpoint=host:port` gets `http://` when HTTPS is disabled and `https://`
  otherwise, and with an endpoint the request checksum mode defaults to `when_required` (third-party S3
  servers reject the newer default checksum headers) unless the URL or `AWS_REQUEST_CHECKSUM_CALCULATION`
  sets it. Any other parameter is an error, as in gocloud ("unknown query parameter").
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from vzkeep.errors import UsageError

BACKEND_ENV = "PULUMI_BACKEND_URL"
DEFAULT_REGION = "us-east-1"

# Go's strconv.ParseBool spellings, the only ones gocloud accepts.
_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
_CHECKSUM_MODES = {"when_supported", "when_required"}
# Accepted but without effect on plain S3 calls against a self-hosted server; kept so that a URL that
# works with `pulumi login` also works here.
_IGNORED = {"awssdk", "rate_limiter_capacity", "dualstack", "fips", "accelerate", "ssetype", "kmskeyid"}
_KNOWN = {
    "endpoint",
    "region",
    "profile",
    "prefix",
    "disableSSL",
    "disable_https",
    "s3ForcePathStyle",
    "use_path_style",
    "anonymous",
    "hostname_immutable",
    "request_checksum_calculation",
    "response_checksum_validation",
    *_IGNORED,
}


class BackendURLError(UsageError, ValueError):
    """The backend URL cannot be used; the message names the part and what is allowed."""


@dataclass(frozen=True)
class Backend:
    """Where the Pulumi state lives: bucket, key prefix and how to reach the S3 endpoint."""

    url: str
    bucket: str
    prefix: str = ""
    endpoint: str | None = None
    region: str | None = None
    profile: str | None = None
    path_style: bool = False
    disable_https: bool = False
    anonymous: bool = False
    request_checksum_calculation: str | None = None
    response_checksum_validation: str | None = None

    def key(self, name: str) -> str:
        """The bucket key of a backend-relative name such as `.pulumi/meta.yaml`."""
        return self.prefix + name

    def relative(self, key: str) -> str:
        """The backend-relative name of a bucket key (inverse of `key`)."""
        return key[len(self.prefix) :] if key.startswith(self.prefix) else key


def backend_url_from_env(explicit: str | None, env: Mapping[str, str] | None = None) -> str:
    """The URL given on the command line, else `PULUMI_BACKEND_URL`, else a usage error."""
    if explicit:
        return explicit
    value = (env if env is not None else os.environ).get(BACKEND_ENV, "")
    if not value:
        raise BackendURLError(
            f"no backend URL: pass --backend or set {BACKEND_ENV} (the URL `pulumi login` takes, e.g. "
            "s3://state?endpoint=s3.lan:8333&disableSSL=true&s3ForcePathStyle=true&region=us-east-1)"
        )
    return value


def parse_backend_url(url: str, env: Mapping[str, str] | None = None) -> Backend:
    """Parse a DIY backend URL exactly as Pulumi/gocloud would, or raise BackendURLError."""
    env = env if env is not None else os.environ
    parts = urlsplit(url.strip())
    if parts.scheme != "s3":
        raise BackendURLError(
            f"backend URL {url!r}: scheme {parts.scheme or '(none)'!r} is not supported; vzkeep state "
            "works with S3 backends only (s3://bucket[/prefix]?endpoint=...)"
        )
    if not parts.netloc:
        raise BackendURLError(f"backend URL {url!r}: no bucket name after s3://")
    params = _single_valued_params(url, parts.query)
    disable_https = _bool_param(url, params, "disable_https") or _bool_param(url, params, "disableSSL")
    path_style = _bool_param(url, params, "use_path_style") or _bool_param(url, params, "s3ForcePathStyle")
    endpoint = _endpoint(params.get("endpoint"), disable_https)
    return Backend(
        url=url,
        bucket=parts.netloc,
        prefix=_prefix(params.get("prefix", ""), parts.path),
        endpoint=endpoint,
        region=params.get("region") or None,
        profile=params.get("profile") or None,
        path_style=path_style,
        disable_https=disable_https,
        anonymous=_bool_param(url, params, "anonymous"),
        request_checksum_calculation=_checksum_mode(
            url, params, "request_checksum_calculation", endpoint, env.get("AWS_REQUEST_CHECKSUM_CALCULATION")
        ),
        response_checksum_validation=_checksum_mode(url, params, "response_checksum_validation", None, None),
    )


def _single_valued_params(url: str, query: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "key":
            raise BackendURLError(
                f"backend URL {url!r}: query parameter 'key' makes a single-object bucket, which cannot "
                "hold a Pulumi backend; remove it"
            )
        if name not in _KNOWN:
            allowed = ", ".join(sorted(_KNOWN))
            raise BackendURLError(
                f"backend URL {url!r}: unknown query parameter {name!r}; allowed: {allowed}"
            )
        # gocloud reads values[0]: the first occurrence wins.
        params.setdefault(name, value)
    return params


def _bool_param(url: str, params: Mapping[str, str], name: str) -> bool:
    value = params.get(name)
    if not value:  # gocloud skips an empty value (`q.Get(key) != ""`)
        return False
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise BackendURLError(
        f"backend URL {url!r}: invalid value for query parameter {name!r}: {value!r} (use true or false)"
    )


def _endpoint(raw: str | None, disable_https: bool) -> str | None:
    if not raw:
        return None
    if "://" in raw:
        # An explicit scheme wins, even with disableSSL (pulumi "disableSSL translated" case).
        return raw.rstrip("/")
    return f"{'http' if disable_https else 'https'}://{raw.rstrip('/')}"


def _prefix(query_prefix: str, path: str) -> str:
    path_prefix = path.lstrip("/")
    if path_prefix and not path_prefix.endswith("/"):
        path_prefix += "/"
    return query_prefix + path_prefix


def _checksum_mode(
    url: str, params: Mapping[str, str], name: str, endpoint: str | None, env_value: str | None
) -> str | None:
    value = params.get(name)
    if value:
        if value not in _CHECKSUM_MODES:
            raise BackendURLError(
                f"backend URL {url!r}: {name}={value!r} is not one of {', '.join(sorted(_CHECKSUM_MODES))}"
            )
        return value
    if endpoint and not env_value:
        return "when_required"
    return None


def make_client(backend: Backend, *, max_pool_connections: int = 16) -> Any:
    """A boto3 S3 client for the backend; credentials come from the standard AWS chain or `profile=`."""
    import boto3
    from botocore import UNSIGNED
    from botocore.config import Config

    config_args: dict[str, Any] = {
        "s3": {"addressing_style": "path" if backend.path_style else "auto"},
        "max_pool_connections": max_pool_connections,
        "retries": {"max_attempts": 3, "mode": "standard"},
        "connect_timeout": 5,
        "read_timeout": 30,
    }
    if backend.request_checksum_calculation:
        config_args["request_checksum_calculation"] = backend.request_checksum_calculation
    if backend.response_checksum_validation:
        config_args["response_checksum_validation"] = backend.response_checksum_validation
    if backend.anonymous:
        config_args["signature_version"] = UNSIGNED
    session = (
        boto3.session.Session(profile_name=backend.profile) if backend.profile else boto3.session.Session()
    )
    region = backend.region or session.region_name or DEFAULT_REGION
    return session.client(
        "s3", endpoint_url=backend.endpoint, region_name=region, config=Config(**config_args)
    )
