"""The Pulumi DIY backend URL, parsed the way `pulumi login` (gocloud s3blob + Pulumi's legacy rewrite) does."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vzkeep.state.backend import BackendURLError, backend_url_from_env, make_client, parse_backend_url

NO_ENV: dict[str, str] = {}

# case, URL, expected fields (others are not checked)
VALID = [
    (
        "bare bucket",
        "s3://state",
        {"bucket": "state", "prefix": "", "endpoint": None, "request_checksum_calculation": None},
    ),
    # pp legacy_s3_params_test.go: "bare endpoint with disableSSL gets http scheme"
    (
        "homelab legacy form",
        "s3://state?endpoint=s3.lan:8333&disableSSL=true&s3ForcePathStyle=true&region=eu-1",
        {
            "endpoint": "http://s3.lan:8333",
            "path_style": True,
            "disable_https": True,
            "region": "eu-1",
            "request_checksum_calculation": "when_required",
        },
    ),
    # pp: "bare endpoint gets https scheme"
    ("bare endpoint without disableSSL", "s3://b?endpoint=minio:9000", {"endpoint": "https://minio:9000"}),
    # pp: "disableSSL translated" keeps the explicit https scheme
    (
        "explicit scheme wins",
        "s3://b?endpoint=https://minio:9000&disableSSL=true",
        {"endpoint": "https://minio:9000", "disable_https": True},
    ),
    (
        "v2 names",
        "s3://b?endpoint=s3.lan:8333&disable_https=true&use_path_style=true",
        {"endpoint": "http://s3.lan:8333", "path_style": True},
    ),
    ("path is a prefix", "s3://b/app/project1", {"bucket": "b", "prefix": "app/project1/"}),
    ("trailing slash kept once", "s3://b/app/", {"prefix": "app/"}),
    ("gocloud prefix param goes first", "s3://b/sub?prefix=team-", {"prefix": "team-sub/"}),
    ("profile", "s3://b?profile=homelab&awssdk=v2", {"profile": "homelab"}),
    (
        "explicit checksum mode kept",
        "s3://b?endpoint=h:1&request_checksum_calculation=when_supported",
        {"request_checksum_calculation": "when_supported"},
    ),
    ("Go bool spelling", "s3://b?s3ForcePathStyle=T&disableSSL=0", {"path_style": True, "disable_https": False}),
    ("first value wins", "s3://b?region=a&region=b", {"region": "a"}),
]


@pytest.mark.parametrize(("case", "url", "expected"), VALID)
def test_valid_urls_parse_like_pulumi(case: str, url: str, expected: dict[str, Any]) -> None:
    backend = parse_backend_url(url, env=NO_ENV)
    assert {name: getattr(backend, name) for name in expected} == expected, case


def test_the_checksum_env_variable_suppresses_the_default() -> None:
    # pp: TestTranslateLegacyS3ParamsChecksumEnvVar
    backend = parse_backend_url(
        "s3://b?endpoint=https://example.com", env={"AWS_REQUEST_CHECKSUM_CALCULATION": "when_supported"}
    )
    assert backend.request_checksum_calculation is None


@pytest.mark.parametrize(
    ("case", "url", "message"),
    [
        ("file backend", "file:///home/me/state", "scheme 'file'"),
        ("cloud backend", "https://api.pulumi.com", "scheme 'https'"),
        ("no bucket", "s3://", "no bucket"),
        ("typo in a parameter", "s3://b?endpint=x", "unknown query parameter 'endpint'"),
        ("bad bool", "s3://b?disableSSL=banana", "invalid value for query parameter 'disableSSL'"),
        ("bad checksum mode", "s3://b?request_checksum_calculation=always", "when_required"),
        ("single key bucket", "s3://b?key=state.json", "single-object"),
    ],
)
def test_invalid_urls_say_what_is_wrong(case: str, url: str, message: str) -> None:
    with pytest.raises(BackendURLError) as caught:
        parse_backend_url(url, env=NO_ENV)
    assert message in str(caught.value), case


@pytest.mark.parametrize(
    ("case", "explicit", "env", "expected"),
    [
        ("flag wins", "s3://flag", {"PULUMI_BACKEND_URL": "s3://env"}, "s3://flag"),
        ("env fallback", None, {"PULUMI_BACKEND_URL": "s3://env"}, "s3://env"),
    ],
)
def test_backend_url_source(case: str, explicit: str | None, env: dict[str, str], expected: str) -> None:
    assert backend_url_from_env(explicit, env) == expected, case


def test_no_backend_url_anywhere_is_a_usage_error_with_an_example() -> None:
    with pytest.raises(BackendURLError, match="PULUMI_BACKEND_URL"):
        backend_url_from_env(None, {})


def test_client_uses_endpoint_region_and_path_style(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "a")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "b")
    client = make_client(
        parse_backend_url("s3://b?endpoint=s3.lan:8333&disableSSL=true&s3ForcePathStyle=true&region=eu-1", env=NO_ENV)
    )
    assert client.meta.endpoint_url == "http://s3.lan:8333"
    assert client.meta.region_name == "eu-1"
    assert client.meta.config.s3["addressing_style"] == "path"
    assert client.meta.config.request_checksum_calculation == "when_required"


segment = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=12).filter(
    lambda s: s not in {".", ".."}
)


@given(
    bucket=st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=3, max_size=20),
    path=st.lists(segment, max_size=4),
    name=st.lists(segment, min_size=1, max_size=4),
)
def test_keys_are_prefix_plus_name_and_relative_undoes_it(bucket: str, path: list[str], name: list[str]) -> None:
    backend = parse_backend_url(f"s3://{bucket}/{'/'.join(path)}", env=NO_ENV)
    relative = "/".join(name)
    assert backend.bucket == bucket
    assert backend.prefix == ("/".join(path) + "/" if path else "")
    assert backend.key(relative) == backend.prefix + relative
    assert backend.relative(backend.key(relative)) == relative
