"""The sandbox's HTTP layer under hostile or broken requests: PVE's status codes (pve-http-server
``src/PVE/APIServer/AnyEvent.pm``), no thread left blocked, authentication before any body byte is
read, and never a traceback for client input."""

from __future__ import annotations

import socket
import ssl
import time
from collections.abc import Iterator

import pytest

from tests.helpers.sandbox import RunningSandbox, running_sandbox

ANSWER_WITHIN = 10.0  # seconds; a blocked thread would never answer


@pytest.fixture(scope="module")
def sb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningSandbox]:
    with running_sandbox(tmp_path_factory.mktemp("http")) as sandbox:
        yield sandbox


def raw_request(sb: RunningSandbox, head: str, body: bytes = b"") -> tuple[int, str, bytes]:
    """Send ``head`` (request line and headers, CRLF-joined, without the blank line) and ``body`` over
    TLS; return (status, reason, body) of the reply, or fail when none comes."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    with socket.create_connection((sb.host, sb.port), timeout=ANSWER_WITHIN) as plain, \
            context.wrap_socket(plain) as tls:
        tls.sendall(head.encode("latin-1") + b"\r\n\r\n" + body)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = tls.recv(65536)
            if not chunk:
                raise AssertionError(f"connection closed without a reply: {data!r}")
            data += chunk
        header, _, rest = data.partition(b"\r\n\r\n")
        lines = header.decode("latin-1").split("\r\n")
        _, status, reason = [*lines[0].split(" ", 2), ""][:3]
        length = next((int(line.split(":", 1)[1]) for line in lines
                       if line.lower().startswith("content-length:")), 0)
        while len(rest) < length:
            chunk = tls.recv(65536)
            if not chunk:
                break
            rest += chunk
        return int(status), reason, rest[:length]


def request_head(sb: RunningSandbox, method: str, path: str, *headers: str, token: bool = True) -> str:
    lines = [f"{method} /api2/json{path} HTTP/1.1", f"Host: {sb.host}:{sb.port}"]
    if token:
        lines.append(f"Authorization: PVEAPIToken={sb.admin_token}")
    return "\r\n".join([*lines, *headers])


@pytest.mark.parametrize(("name", "length", "status"), [
    ("negative length blocked a thread reading to EOF", "-1", 400),
    ("a word", "abc", 400),
    ("two values", "5, 6", 400),
])
def test_a_bad_content_length_is_answered_not_waited_on(sb, name: str, length: str, status: int) -> None:
    began = time.monotonic()
    got, reason, _ = raw_request(sb, request_head(sb, "POST", "/cluster/backup", f"Content-Length: {length}",
                                                  "Content-Type: application/x-www-form-urlencoded"))
    assert (got, reason) == (status, "invalid Content-Length"), name
    assert time.monotonic() - began < ANSWER_WITHIN


def test_a_deeply_nested_json_body_is_pves_500_not_a_dropped_connection(sb, capfd) -> None:
    body = b"[" * 100_000 + b"]" * 100_000
    status, reason, text = raw_request(sb, request_head(sb, "POST", "/cluster/backup", f"Content-Length: {len(body)}",
                                                        "Content-Type: application/json"), body)
    assert status == 500
    assert reason.startswith("json text or perl structure exceeds maximum nesting level (max_depth set too low?)")
    assert text.decode().startswith("json text or perl structure exceeds maximum nesting level")
    assert "Traceback" not in capfd.readouterr().err


def test_malformed_json_is_a_500_with_the_parsers_words(sb) -> None:
    body = b'{"schedule": '
    status, reason, _ = raw_request(sb, request_head(sb, "POST", "/cluster/backup", f"Content-Length: {len(body)}",
                                                     "Content-Type: application/json"), body)
    assert status == 500 and reason.startswith("malformed JSON string")


def test_a_non_ascii_authorization_is_401_like_any_bad_token(sb, capfd) -> None:
    head = request_head(sb, "GET", "/version", token=False)
    head += "\r\nAuthorization: PVEAPIToken=root@pam!vzkeep=\xe9\xe9\xe9"
    assert raw_request(sb, head)[:2] == (401, "Authentication failed!")
    assert "Traceback" not in capfd.readouterr().err


def test_authentication_comes_before_reading_the_body(sb) -> None:
    # 50 MB announced, none sent: PVE answers from the headers alone (auth_handler runs before the read).
    head = request_head(sb, "POST", "/cluster/backup", "Content-Length: 50000000", token=False)
    head += "\r\nAuthorization: PVEAPIToken=root@pam!vzkeep=00000000-0000-0000-0000-000000000000"
    began = time.monotonic()
    assert raw_request(sb, head)[:2] == (401, "Authentication failed!")
    assert time.monotonic() - began < ANSWER_WITHIN


def test_an_authenticated_body_over_512_kib_is_refused_unread(sb) -> None:
    head = request_head(sb, "POST", "/cluster/backup", f"Content-Length: {512 * 1024 + 1}")
    assert raw_request(sb, head)[:2] == (501, "for data too large")


def test_a_body_on_get_and_chunked_bodies_are_pves_501(sb) -> None:
    head = request_head(sb, "GET", "/version", "Content-Length: 3")
    assert raw_request(sb, head, b"a=b")[:2] == (501, "Unexpected content for method 'GET'")
    head = request_head(sb, "POST", "/cluster/backup", "Transfer-Encoding: chunked")
    assert raw_request(sb, head, b"0\r\n\r\n")[:2] == (501, "chunked transfer encoding not supported")


def test_repeated_form_keys_are_a_list_and_the_query_wins(sb) -> None:
    # AnyEvent.pm decode_urlencoded: a repeated key collects every value; -list formats join them with commas
    body = b"id=repeated&schedule=sun+04%3A00&vmid=100&vmid=101&storage=local&comment=body"
    head = request_head(sb, "POST", "/cluster/backup?comment=query", f"Content-Length: {len(body)}",
                        "Content-Type: application/x-www-form-urlencoded")
    assert raw_request(sb, head, body)[0] == 200
    job = sb.api().cluster.backup("repeated").get()
    assert (job["vmid"], job["comment"]) == ("100,101", "query")
    sb.api().cluster.backup("repeated").delete()


def test_the_server_keeps_serving_after_hostile_requests(sb) -> None:
    for length in ("-1", "x"):
        raw_request(sb, request_head(sb, "POST", "/cluster/backup", f"Content-Length: {length}"))
    assert sb.api().version.get()["release"]
