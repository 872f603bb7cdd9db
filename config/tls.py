"""TLS material for federation: a test CA, server certificates, and the SSL contexts.

Why here: federation is HTTPS only (Synapse will not talk plain HTTP to a peer),
so every test network needs certificates its members trust. ``generate-config``
and ``testnet`` create them with the functions below; the server builds its
listening and outgoing contexts with ``server_ssl_context`` and
``client_ssl_context`` from the paths in the config.

Keys are RSA 2048: every TLS stack we meet (Python's ssl, Twisted/pyOpenSSL in
Synapse, Go in Complement tools) accepts them. Certificates carry the extensions
strict verifiers insist on (basic constraints, key usage, subject and authority
key identifiers, subject alternative names).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import ssl

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from config.errors import ConfigError
from config.schema import FederationConfig, ListenerConfig

__all__ = [
    "CA_CERT_NAME",
    "CA_KEY_NAME",
    "client_ssl_context",
    "create_ca",
    "create_self_signed",
    "ensure_ca",
    "issue_server_cert",
    "listener_ssl_context",
    "server_ssl_context",
    "split_host",
]

CA_CERT_NAME = "ca.crt"
CA_KEY_NAME = "ca.key"
CA_DAYS = 3650
CERT_DAYS = 3650
_CLOCK_SKEW = datetime.timedelta(days=1)  # valid from yesterday: peers' clocks differ a little

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


# ---- creating certificates --------------------------------------------------------------


def create_ca(directory: str) -> tuple[str, str]:
    """Create a test CA (10 years) in ``directory``; return ``(ca_cert_path, ca_key_path)``.

    Refuses to replace an existing CA: certificates issued by it would stop verifying.
    """
    cert_path, key_path = _ca_paths(directory)
    for path in (cert_path, key_path):
        if os.path.exists(path):
            raise ConfigError("a CA already exists here; not replacing it", file=path)
    key = _new_key()
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Tricolor test network"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"Tricolor test CA {secrets.token_hex(4)}"),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    _write_pair(cert, key, cert_path, key_path)
    return cert_path, key_path


def ensure_ca(directory: str) -> tuple[str, str]:
    """The CA in ``directory``, created first if there is none."""
    cert_path, key_path = _ca_paths(directory)
    if os.path.exists(cert_path) and os.path.exists(key_path):
        return cert_path, key_path
    return create_ca(directory)


def issue_server_cert(
    ca_cert_path: str, ca_key_path: str, host: str, out_cert: str, out_key: str
) -> tuple[str, str]:
    """Issue a server certificate for ``host`` signed by the CA; return ``(out_cert, out_key)``.

    ``host`` may carry a port (``hs1.test:8448``, ``127.0.0.1:8448``), which is ignored.
    The subject alternative names hold the host (as an IP address when it is an IP
    literal, else as a DNS name) plus ``localhost`` and ``127.0.0.1``.
    """
    ca_cert = _load_cert(ca_cert_path)
    ca_key = _load_key(ca_key_path)
    ca_ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    key = _new_key()
    cert = (
        _leaf_builder(host, key)
        .issuer_name(ca_cert.subject)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    _write_pair(cert, key, out_cert, out_key)
    return out_cert, out_key


def create_self_signed(host: str, out_cert: str, out_key: str) -> tuple[str, str]:
    """A self-signed certificate for ``host`` (same names as ``issue_server_cert``).

    Peers trust it only if they are given this very file as a CA (or do not verify).
    """
    key = _new_key()
    builder = _leaf_builder(host, key)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        builder.issuer_name(_leaf_name(host))
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    _write_pair(cert, key, out_cert, out_key)
    return out_cert, out_key


def split_host(server_name: str) -> str:
    """The host of a server name or ``host:port``: ``[::1]:8448`` -> ``::1``, ``hs1:80`` -> ``hs1``."""
    if server_name.startswith("["):
        return server_name[1 : server_name.index("]")]
    if server_name.count(":") == 1:
        return server_name.partition(":")[0]
    return server_name  # a bare hostname, or an unbracketed IPv6 address


# ---- SSL contexts -----------------------------------------------------------------------


def server_ssl_context(cert_path: str, key_path: str) -> ssl.SSLContext:
    """The context a TLS listener serves with; ``ConfigError`` names an unreadable file."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    for path in (cert_path, key_path):
        if not os.path.isfile(path):
            raise ConfigError("TLS file not found", file=path)
    try:
        context.load_cert_chain(cert_path, key_path)
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(
            f"cannot load the certificate and key {key_path}: {exc}", file=cert_path
        ) from None
    return context


def listener_ssl_context(listener: ListenerConfig) -> ssl.SSLContext | None:
    """``server_ssl_context`` for a listener with ``tls: true``; None for a plain one."""
    if not listener.tls:
        return None
    # ListenerConfig guarantees both paths when tls is true.
    return server_ssl_context(
        listener.tls_certificate_path or "", listener.tls_private_key_path or ""
    )


def client_ssl_context(federation: FederationConfig) -> ssl.SSLContext:
    """The context for outgoing federation: system CAs plus ``ca_file``, unless verify_tls is off."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if federation.ca_file is not None:
        try:
            context.load_verify_locations(cafile=federation.ca_file)
        except (ssl.SSLError, OSError) as exc:
            raise ConfigError(
                f"federation.ca_file cannot be loaded: {exc}", file=federation.ca_file
            ) from None
    if not federation.verify_tls:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


# ---- helpers ----------------------------------------------------------------------------


def _ca_paths(directory: str) -> tuple[str, str]:
    directory = os.path.abspath(os.path.expanduser(directory))
    return os.path.join(directory, CA_CERT_NAME), os.path.join(directory, CA_KEY_NAME)


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC).replace(microsecond=0)


def _new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ip(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _leaf_name(host: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, split_host(host)[:64])])


def _alt_names(host: str) -> list[x509.GeneralName]:
    bare = split_host(host)
    if not bare:
        raise ValueError(f"no host in {host!r}")
    names: list[x509.GeneralName] = []
    address = _ip(bare)
    for name in (
        x509.IPAddress(address) if address is not None else x509.DNSName(bare.lower()),
        x509.DNSName("localhost"),
        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
    ):
        if name not in names:
            names.append(name)
    return names


def _leaf_builder(host: str, key: rsa.RSAPrivateKey) -> x509.CertificateBuilder:
    now = _now()
    return (
        x509.CertificateBuilder()
        .subject_name(_leaf_name(host))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + datetime.timedelta(days=CERT_DAYS))
        .add_extension(x509.SubjectAlternativeName(_alt_names(host)), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )


def _load_cert(path: str) -> x509.Certificate:
    try:
        with open(path, "rb") as handle:
            return x509.load_pem_x509_certificate(handle.read())
    except OSError as exc:
        raise ConfigError(f"cannot read certificate: {exc.strerror}", file=path) from None
    except ValueError:
        raise ConfigError("not a PEM certificate", file=path) from None


def _load_key(path: str) -> rsa.RSAPrivateKey:
    try:
        with open(path, "rb") as handle:
            key = serialization.load_pem_private_key(handle.read(), password=None)
    except OSError as exc:
        raise ConfigError(f"cannot read private key: {exc.strerror}", file=path) from None
    except (ValueError, TypeError):
        raise ConfigError("not an unencrypted PEM private key", file=path) from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ConfigError("expected an RSA private key", file=path)
    return key


def _write_pair(
    cert: x509.Certificate, key: rsa.RSAPrivateKey, cert_path: str, key_path: str
) -> None:
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)  # the key first: a certificate without its key is useless
    _write(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)


def _write(path: str, data: bytes, mode: int) -> None:
    """Replace ``path`` atomically with ``data``; the file never exists with looser permissions."""
    path = os.path.abspath(os.path.expanduser(path))
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
