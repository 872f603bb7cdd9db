from __future__ import annotations

import ipaddress
import os
import socket
import ssl
import stat
import threading
from pathlib import Path

import pytest
from cryptography import x509

from config.errors import ConfigError
from config.schema import FederationConfig, ListenerConfig
from config.tls import (
    client_ssl_context,
    create_ca,
    create_self_signed,
    ensure_ca,
    issue_server_cert,
    listener_ssl_context,
    server_ssl_context,
    split_host,
)


def assert_tls_handshake(server: ssl.SSLContext, cafile: str, hostname: str) -> None:
    """A client trusting only ``cafile`` completes a handshake with ``server`` for ``hostname``."""
    ours, theirs = socket.socketpair()
    errors: list[BaseException] = []

    def serve() -> None:
        try:
            with server.wrap_socket(theirs, server_side=True) as tls:
                tls.recv(1)
        except (OSError, ssl.SSLError) as exc:  # the client's failure shows up here too
            errors.append(exc)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        ours.settimeout(10)
        client = ssl.create_default_context(cafile=cafile)
        with client.wrap_socket(ours, server_hostname=hostname) as tls:
            tls.sendall(b"x")
    finally:
        thread.join(10)
        theirs.close()
    assert not errors, errors


def _alt_names(path: str) -> tuple[list[str], list[str]]:
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    return (
        san.get_values_for_type(x509.DNSName),
        [str(ip) for ip in san.get_values_for_type(x509.IPAddress)],
    )


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    return create_ca(str(tmp_path_factory.mktemp("ca")))


def test_ca_is_a_ten_year_ca(ca: tuple[str, str]) -> None:
    cert_path, key_path = ca
    cert = x509.load_pem_x509_certificate(Path(cert_path).read_bytes())
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert lifetime.days >= 3650
    assert stat.S_IMODE(os.stat(key_path).st_mode) == 0o600


def test_create_ca_refuses_to_replace_and_ensure_reuses(ca: tuple[str, str]) -> None:
    directory = os.path.dirname(ca[0])
    with pytest.raises(ConfigError, match="already exists"):
        create_ca(directory)
    assert ensure_ca(directory) == ca


@pytest.mark.parametrize(
    ("host", "dns", "ips"),
    [
        ("hs1.test", ["hs1.test", "localhost"], ["127.0.0.1"]),
        ("hs1.test:8448", ["hs1.test", "localhost"], ["127.0.0.1"]),
        ("127.0.0.1:18201", ["localhost"], ["127.0.0.1"]),
        ("10.1.2.3", ["localhost"], ["10.1.2.3", "127.0.0.1"]),
        ("[::1]:8448", ["localhost"], ["::1", "127.0.0.1"]),
    ],
)
def test_server_cert_names(
    ca: tuple[str, str], tmp_path: Path, host: str, dns: list[str], ips: list[str]
) -> None:
    cert, key = issue_server_cert(*ca, host, str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    assert _alt_names(cert) == (dns, ips)
    assert stat.S_IMODE(os.stat(key).st_mode) == 0o600


@pytest.mark.parametrize("hostname", ["hs1.test", "localhost", "127.0.0.1"])
def test_server_cert_verifies_against_the_ca(
    ca: tuple[str, str], tmp_path: Path, hostname: str
) -> None:
    cert, key = issue_server_cert(*ca, "hs1.test", str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    assert_tls_handshake(server_ssl_context(cert, key), ca[0], hostname)


def test_server_cert_for_an_ip_literal_verifies(ca: tuple[str, str], tmp_path: Path) -> None:
    cert, key = issue_server_cert(
        *ca, "127.0.0.1:18201", str(tmp_path / "s.crt"), str(tmp_path / "s.key")
    )
    assert_tls_handshake(server_ssl_context(cert, key), ca[0], "127.0.0.1")


def test_wrong_name_or_other_ca_fails(ca: tuple[str, str], tmp_path: Path) -> None:
    cert, key = issue_server_cert(*ca, "hs1.test", str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    with pytest.raises(ssl.SSLCertVerificationError, match=r"mismatch|not valid"):
        assert_tls_handshake(server_ssl_context(cert, key), ca[0], "hs2.test")
    other_ca, _ = create_ca(str(tmp_path / "other"))
    with pytest.raises(ssl.SSLCertVerificationError):
        assert_tls_handshake(server_ssl_context(cert, key), other_ca, "hs1.test")


def test_self_signed_verifies_against_itself(tmp_path: Path) -> None:
    cert, key = create_self_signed("hs9.test", str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    assert _alt_names(cert) == (["hs9.test", "localhost"], ["127.0.0.1"])
    assert_tls_handshake(server_ssl_context(cert, key), cert, "hs9.test")


def test_listener_and_client_contexts(ca: tuple[str, str], tmp_path: Path) -> None:
    cert, key = issue_server_cert(*ca, "hs1.test", str(tmp_path / "s.crt"), str(tmp_path / "s.key"))
    assert listener_ssl_context(ListenerConfig()) is None
    listener = ListenerConfig(
        port=8448,
        resources=("federation",),
        tls=True,
        tls_certificate_path=cert,
        tls_private_key_path=key,
    )
    server = listener_ssl_context(listener)
    assert server is not None
    verifying = client_ssl_context(FederationConfig(ca_file=ca[0]))
    assert verifying.verify_mode == ssl.CERT_REQUIRED and verifying.check_hostname
    lax = client_ssl_context(FederationConfig(verify_tls=False))
    assert lax.verify_mode == ssl.CERT_NONE and not lax.check_hostname


def test_missing_tls_files_name_the_file(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.crt")
    with pytest.raises(ConfigError) as err:
        server_ssl_context(missing, missing)
    assert err.value.file == missing
    with pytest.raises(ConfigError) as err:
        client_ssl_context(FederationConfig(ca_file=missing))
    assert err.value.file == missing and "federation.ca_file" in err.value.problem


def test_split_host() -> None:
    assert split_host("hs1.test:8448") == "hs1.test"
    assert split_host("hs1.test") == "hs1.test"
    assert split_host("[::1]:8448") == "::1"
    assert ipaddress.ip_address(split_host("127.0.0.1:1")) == ipaddress.ip_address("127.0.0.1")
