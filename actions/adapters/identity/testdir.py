"""A throwaway OpenLDAP directory: Debian's slapd, provisioned in a folder of its own, for the identity
adapter's tests (tests/slapd.py), the lab's brute-force scenario and `autonomy demo` (as root).

It never touches this machine's own directory: its own slapd.conf and database in `root`, loopback ports picked
free (ldap:// and ldaps:// with a CA made here) and optionally an `ldapi://` socket, the ppolicy overlay with a
default policy that enforces locks, a service account for the adapter (write access by ACL, not the rootdn:
ACLs are part of what is tested), protected groups (one nested). Accounts are made with known passwords
(`Slapd.add_user`). `delete` stops the server and removes its folder. The admin and service passwords live in
files readable only by their owner and are never part of the object's repr.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from ldap3.utils.dn import escape_rdn

from autonomy_controller.controller.lab.directory_packages import SLAPD

SUFFIX = "dc=example,dc=org"
ADMIN_DN = f"cn=admin,{SUFFIX}"
SERVICE_DN = f"cn=autonomy,ou=services,{SUFFIX}"
PEOPLE = f"ou=people,{SUFFIX}"
ADMINS = f"cn=admins,ou=groups,{SUFFIX}"
DBAS = f"cn=dbas,ou=groups,{SUFFIX}"
"""A group nested in ADMINS: its members are protected too."""
DEFAULT_POLICY = f"cn=default,ou=policies,{SUFFIX}"
NOLOCK_POLICY = f"cn=nolock,ou=policies,{SUFFIX}"
"""A policy without pwdLockout: slapd ignores pwdAccountLockedTime under it."""
SCHEMAS = ("core", "cosine", "inetorgperson", "nis")


class DirectoryError(RuntimeError):
    """The throwaway directory could not be provisioned or changed; the message never holds a password."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_ca(directory: Path, name: str) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, False, False, False, True, True, False, False), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = directory / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def make_server_cert(directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "server.pem", directory / "server.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


def ldif(dn: str, **attributes: str | list[str]) -> str:
    lines = [f"dn: {dn}"]
    for name, values in attributes.items():
        for value in [values] if isinstance(values, str) else values:
            lines.append(f"{name}: {value}")
    return "\n".join(lines) + "\n"


@dataclass
class Slapd:
    root: Path
    port: int = field(default_factory=free_port)
    tls_port: int = field(default_factory=free_port)
    admin_password: str = field(default_factory=lambda: secrets.token_hex(12), repr=False)
    service_password: str = field(default_factory=lambda: secrets.token_hex(12), repr=False)
    pid: int | None = None
    ldapi: Path | None = None
    """Also listen on this unix socket (ldapi://): reachable from any network namespace of the machine."""

    @property
    def ldapi_url(self) -> str:
        if self.ldapi is None:
            raise DirectoryError("this directory has no ldapi:// socket")
        return "ldapi://" + urllib.parse.quote(str(self.ldapi), safe="")

    @property
    def url(self) -> str:
        return f"ldap://127.0.0.1:{self.port}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://127.0.0.1:{self.tls_port}"

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def service_password_file(self) -> Path:
        return self.root / "service-password"

    def start(self) -> None:
        """slapadd the base entries, then start slapd (it daemonizes) and wait until it answers."""
        if SLAPD.binary is None or not SLAPD.present():
            raise DirectoryError(f"{SLAPD.package} is not installed")
        self.root.mkdir(parents=True, exist_ok=True)
        self.root.chmod(0o700)  # slapd.conf holds the rootpw
        (self.root / "db").mkdir()
        _, ca_key, ca = make_ca(self.root, "ca")
        cert, key = make_server_cert(self.root, ca_key, ca)
        self.service_password_file.write_text(self.service_password + "\n")
        self.service_password_file.chmod(0o600)
        conf = self.root / "slapd.conf"
        conf.write_text(
            "".join(f"include /etc/ldap/schema/{name}.schema\n" for name in SCHEMAS)
            + f"modulepath /usr/lib/ldap\nmoduleload back_mdb\nmoduleload ppolicy\npidfile {self.root}/slapd.pid\n"
            + f"TLSCACertificateFile {self.ca_file}\nTLSCertificateFile {cert}\nTLSCertificateKeyFile {key}\n"
            + f'database mdb\nsuffix "{SUFFIX}"\nrootdn "{ADMIN_DN}"\nrootpw {self.admin_password}\n'
            + f"directory {self.root}/db\n"
            + "access to attrs=userPassword by anonymous auth by self write by * none\n"
            + f'access to * by dn.exact="{SERVICE_DN}" write by users read by * none\n'
            + f'overlay ppolicy\nppolicy_default "{DEFAULT_POLICY}"\n'
        )
        entries = [
            ldif(SUFFIX, objectClass=["dcObject", "organization"], o="Example", dc="example"),
            *(
                ldif(f"ou={ou},{SUFFIX}", objectClass="organizationalUnit", ou=ou)
                for ou in ("people", "groups", "services", "policies")
            ),
            ldif(
                DEFAULT_POLICY,
                objectClass=["pwdPolicy", "device"],
                cn="default",
                pwdAttribute="userPassword",
                pwdLockout="TRUE",
            ),
            ldif(NOLOCK_POLICY, objectClass=["pwdPolicy", "device"], cn="nolock", pwdAttribute="userPassword"),
            ldif(
                SERVICE_DN,
                objectClass=["applicationProcess", "simpleSecurityObject"],
                cn="autonomy",
                userPassword=self.service_password,
            ),
        ]
        (self.root / "base.ldif").write_text("\n".join(entries))
        conf.chmod(0o600)
        _run(["slapadd", "-f", str(conf), "-l", str(self.root / "base.ldif")], 60)
        (self.root / "base.ldif").unlink()  # it holds the service password
        self.launch()
        self.add_group(DBAS, [])
        self.add_group(ADMINS, [DBAS])

    def launch(self) -> None:
        """Start slapd on the provisioned database (again, after `stop`) and wait until it answers."""
        if SLAPD.binary is None:
            raise DirectoryError(f"{SLAPD.package} is not installed")
        _run([SLAPD.binary, "-f", str(self.root / "slapd.conf"), "-h", " ".join(self.listeners)], 30)
        deadline = time.monotonic() + 10
        while True:
            try:
                self.admin().unbind()
                break
            except ldap3.core.exceptions.LDAPException:
                if time.monotonic() > deadline:
                    self._stop_from_pidfile()
                    raise
                time.sleep(0.05)
        self.pid = int((self.root / "slapd.pid").read_text().strip())

    @property
    def listeners(self) -> list[str]:
        return [f"{self.url}/", f"{self.tls_url}/", *([f"{self.ldapi_url}/"] if self.ldapi else [])]

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if slapd has not gone within 10 s."""
        if self.pid is not None:
            for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    break
                deadline = time.monotonic() + wait
                while time.monotonic() < deadline and Path(f"/proc/{self.pid}").exists():
                    time.sleep(0.05)
                if not Path(f"/proc/{self.pid}").exists():
                    break
            self.pid = None

    def _stop_from_pidfile(self) -> None:
        """A slapd that daemonized but never answered: stopped by the pid it wrote, never left running."""
        try:
            self.pid = int((self.root / "slapd.pid").read_text().strip())
        except (OSError, ValueError):
            return
        self.stop()

    def delete(self) -> None:
        """Stop the server (also one that never answered) and remove its folder: nothing is left behind."""
        if self.pid is None:
            self._stop_from_pidfile()
        self.stop()
        shutil.rmtree(self.root, ignore_errors=True)

    def admin(self) -> ldap3.Connection:
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=5)
        return ldap3.Connection(server, ADMIN_DN, self.admin_password, auto_bind=True, receive_timeout=5)

    def add_user(self, prefix: str = "u", policy: str | None = None, uid: str | None = None) -> tuple[str, str, str]:
        """A fresh account: (uid, dn, password); a random uid unless one is given."""
        uid = uid or f"{prefix}-{secrets.token_hex(4)}"
        dn, password = f"uid={escape_rdn(uid)},{PEOPLE}", secrets.token_hex(10)
        attributes: dict[str, str | list[str]] = {"cn": uid, "sn": uid, "uid": uid, "userPassword": password}
        if policy is not None:
            attributes["pwdPolicySubentry"] = policy
        connection = self.admin()
        _check(connection, connection.add(dn, ["inetOrgPerson"], attributes), f"add {dn}")
        return uid, dn, password

    def add_group(self, dn: str, members: list[str]) -> None:
        connection = self.admin()
        # groupOfNames needs a member: the group's own DN stands in while it has none (a common placeholder)
        _check(connection, connection.add(dn, ["groupOfNames"], {"member": members or [dn]}), f"add {dn}")

    def add_member(self, group: str, dn: str) -> None:
        connection = self.admin()
        _check(connection, connection.modify(group, {"member": [(ldap3.MODIFY_ADD, [dn])]}), f"add {dn} to {group}")

    def attribute(self, dn: str, name: str) -> list[str]:
        connection = self.admin()
        connection.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[name])
        values = [str(v) for v in connection.entries[0][name].values] if connection.entries else []
        connection.unbind()
        return values

    def lock_by_hand(self, dn: str, value: str = "000001010000Z") -> None:
        """What a person does: set the ppolicy lock with ldapmodify, recording no holder."""
        connection = self.admin()
        _check(connection, connection.modify(dn, {"pwdAccountLockedTime": [(ldap3.MODIFY_ADD, [value])]}), f"lock {dn}")

    def can_bind(self, dn: str, password: str) -> bool:
        """Independently of the adapter: does a simple bind as `dn` succeed now?"""
        server = ldap3.Server(self.url, get_info=ldap3.NONE, connect_timeout=5)
        connection = ldap3.Connection(server, dn, password, receive_timeout=5)
        try:
            return bool(connection.bind())
        finally:
            connection.unbind()


def _check(connection: ldap3.Connection, ok: bool, what: str) -> None:
    """Unbind, and raise DirectoryError naming what failed and the server's answer (never an attribute value)."""
    result = connection.result or {}
    connection.unbind()
    if not ok:
        raise DirectoryError(f"{what}: {result.get('description')} {result.get('message', '')}".strip())


def _run(command: list[str], timeout: float) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=timeout)
    except subprocess.CalledProcessError as exc:
        raise DirectoryError(f"{command[0]} failed ({exc.returncode}): {exc.stderr.strip()[-400:]}") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise DirectoryError(f"{command[0]} failed: {exc}") from None
