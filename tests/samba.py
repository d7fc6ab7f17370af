"""A real Active Directory domain controller for the identity adapter's tests: Debian's Samba, provisioned here.

`samba-tool domain provision` (RFC 2307 attributes, a test realm, no DNS) in a temp dir, once per test session,
then `samba` in the foreground with only its LDAP service, inside a network namespace of its own: Samba's LDAP
server listens on the fixed ports 389/636, so a namespace (joined to this one by a veth pair on a private /30 of
TEST-NET-1) is how it gets them without touching this machine's. TLS uses a CA made here and a certificate for
the DC's address; password binds go over ldaps:// (Samba refuses simple binds in clear: strong auth required).

The adapter binds as a service account that is only a member of Account Operators (AD's delegated group for
managing ordinary accounts, not an admin). Protected groups are Domain Admins (the adapter always protects it)
and a configured group with a nested one. Tests make their own accounts with known passwords (`add_user`).
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import os
import secrets
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

import ldap3
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from autonomy_controller.controller.lab.directory_packages import SAMBA
from tests.slapd import make_ca

REALM = "AUTONOMY.TEST"
DOMAIN = "AUTONOMY"
BASE = "DC=autonomy,DC=test"
USERS = f"CN=Users,{BASE}"
SERVICE = "svc-autonomy"
SERVICE_DN = f"CN={SERVICE},{USERS}"
DOMAIN_ADMINS = f"CN=Domain Admins,{USERS}"
TIER0 = f"CN=tier0,{USERS}"
"""A configured protected group (with TIER0_NESTED nested in it): its members are protected too."""
TIER0_NESTED = f"CN=tier0-dbas,{USERS}"
ACCOUNTDISABLE = 0x2
NORMAL_ACCOUNT = 0x200


def samba_tool_path() -> str | None:
    return shutil.which("samba-tool", path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/usr/bin"]))


def make_server_cert(
    directory: Path, ca_key: ec.EllipticCurvePrivateKey, ca: x509.Certificate, address: str
) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, address)]))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(address))]), False)
        .sign(ca_key, hashes.SHA256())
    )
    cert_path, key_path = directory / "dc-cert.pem", directory / "dc-key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    key_path.chmod(0o600)  # Samba refuses a key file others can read
    return cert_path, key_path


def run(*command: str, timeout: float = 120) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:3])} ... failed ({result.returncode}): {result.stderr[-2000:]}")
    return result.stdout


def free_subnet() -> int:
    """An unused /30 of 192.0.2.0/24 (TEST-NET-1, never routed): its index; two sessions never pick the same."""
    used = run("ip", "-o", "-4", "addr", "show")
    for _ in range(100):
        index = secrets.randbelow(62) + 1
        if f"192.0.2.{4 * index + 1}/" not in used and f"192.0.2.{4 * index + 2}/" not in used:
            return index
    raise RuntimeError("no free /30 in 192.0.2.0/24 for the test domain controller")


@dataclass
class Samba:
    root: Path
    admin_password: str = field(default_factory=lambda: "Adm-" + secrets.token_hex(10) + "!")
    service_password: str = field(default_factory=lambda: "Svc-" + secrets.token_hex(10) + "!")
    netns: str = field(default_factory=lambda: f"autonomy-dc-{os.getpid()}")
    subnet: int = 0
    process: subprocess.Popen[bytes] | None = None
    provision_seconds: float = 0.0

    @property
    def host_ip(self) -> str:
        return f"192.0.2.{4 * self.subnet + 1}"

    @property
    def dc_ip(self) -> str:
        return f"192.0.2.{4 * self.subnet + 2}"

    @property
    def veth(self) -> str:
        return f"adc{os.getpid() % 100000}"

    @property
    def tls_url(self) -> str:
        return f"ldaps://{self.dc_ip}"

    @property
    def ca_file(self) -> Path:
        return self.root / "ca.pem"

    @property
    def conf(self) -> Path:
        return self.root / "dc" / "etc" / "smb.conf"

    @property
    def service_password_file(self) -> Path:
        return self.root / "service-password"

    def start(self) -> None:
        """Provision the domain, make the accounts and groups, then start the DC in its namespace."""
        assert SAMBA.present()
        began = time.monotonic()
        self.subnet = free_subnet()
        self._network_up()
        _, ca_key, ca = make_ca(self.root, "ca")
        cert, key = make_server_cert(self.root, ca_key, ca, self.dc_ip)
        self.service_password_file.write_text(self.service_password + "\n")
        self.service_password_file.chmod(0o600)
        self.tool(
            "domain", "provision", f"--targetdir={self.root / 'dc'}", f"--realm={REALM}", f"--domain={DOMAIN}",
            "--server-role=dc", "--dns-backend=NONE", "--use-rfc2307", f"--adminpass={self.admin_password}",
            "--host-name=dc1", f"--option=interfaces={self.dc_ip}/30", "--option=bind interfaces only=yes",
            "--option=server services=ldap", f"--option=pid directory={self.root}",
            f"--option=log file={self.root / 'samba.log'}", "--option=tls enabled=yes",
            f"--option=tls keyfile={key}", f"--option=tls certfile={cert}", f"--option=tls cafile={self.ca_file}",
            "--option=dsdb:schema update allowed=no", conf=False,
        )  # fmt: skip
        # accounts and groups go straight into the database (sam.ldb), before the server runs
        self.tool("user", "create", SERVICE, self.service_password)
        self.tool("group", "addmembers", "Account Operators", SERVICE)
        self.tool("group", "add", "tier0")
        self.tool("group", "add", "tier0-dbas")
        self.tool("group", "addmembers", "tier0", "tier0-dbas")
        self.launch()
        self.provision_seconds = time.monotonic() - began

    def tool(self, *args: str, conf: bool = True) -> str:
        """samba-tool on the domain's database (no server needed: it opens sam.ldb itself)."""
        tool = samba_tool_path()
        assert tool is not None
        return run(tool, *args, *([f"--configfile={self.conf}"] if conf else []))

    def _network_up(self) -> None:
        run("ip", "netns", "add", self.netns)
        run("ip", "-n", self.netns, "link", "set", "lo", "up")
        run("ip", "link", "add", self.veth, "type", "veth", "peer", "name", "dc0", "netns", self.netns)
        run("ip", "addr", "add", f"{self.host_ip}/30", "dev", self.veth)
        run("ip", "link", "set", self.veth, "up")
        run("ip", "-n", self.netns, "addr", "add", f"{self.dc_ip}/30", "dev", "dc0")
        run("ip", "-n", self.netns, "link", "set", "dc0", "up")

    def launch(self) -> None:
        """Start samba (one process, in the foreground of its own namespace) and wait until LDAPS answers."""
        log = (self.root / "samba.out").open("ab")
        self.process = subprocess.Popen(
            ["ip", "netns", "exec", self.netns, "samba", "--foreground", "--no-process-group", "-M", "single",
             f"--configfile={self.conf}"],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        deadline = time.monotonic() + 60
        while True:
            try:
                self.admin().unbind()
                return
            except ldap3.core.exceptions.LDAPException:
                if self.process.poll() is not None:
                    raise RuntimeError(
                        f"samba exited ({self.process.returncode}): see {self.root / 'samba.out'}"
                    ) from None
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)
            self.process = None

    def close(self) -> None:
        """Stop the DC and remove its namespace and veth pair."""
        self.stop()
        with contextlib.suppress(RuntimeError):
            run("ip", "link", "del", self.veth)
        with contextlib.suppress(RuntimeError):
            run("ip", "netns", "del", self.netns)

    def _connection(self, user: str, password: str) -> ldap3.Connection:
        tls = ldap3.Tls(validate=2, ca_certs_file=str(self.ca_file))  # ssl.CERT_REQUIRED
        server = ldap3.Server(self.tls_url, use_ssl=True, tls=tls, get_info=ldap3.NONE, connect_timeout=5)
        return ldap3.Connection(server, user, password, receive_timeout=10)

    def admin(self) -> ldap3.Connection:
        connection = self._connection(f"CN=Administrator,{USERS}", self.admin_password)
        if not connection.bind():
            raise ldap3.core.exceptions.LDAPBindError(str(connection.result))
        return connection

    def add_user(self, prefix: str = "u", name: str | None = None) -> tuple[str, str, str]:
        """A fresh, enabled account: (sAMAccountName, dn, password); a random name unless one is given."""
        name = name or f"{prefix}-{secrets.token_hex(4)}"
        dn, password = f"CN={name},{USERS}", "Pw-" + secrets.token_hex(10) + "!"
        connection = self.admin()
        try:
            attributes = {"sAMAccountName": name, "userPrincipalName": f"{name}@{REALM.lower()}"}
            assert connection.add(dn, ["top", "person", "organizationalPerson", "user"], attributes), connection.result
            quoted = f'"{password}"'.encode("utf-16-le")
            assert connection.modify(dn, {"unicodePwd": [(ldap3.MODIFY_REPLACE, [quoted])]}), connection.result
            control = [(ldap3.MODIFY_REPLACE, [str(NORMAL_ACCOUNT)])]
            assert connection.modify(dn, {"userAccountControl": control}), connection.result
        finally:
            connection.unbind()
        return name, dn, password

    def add_member(self, group: str, dn: str) -> None:
        connection = self.admin()
        try:
            assert connection.modify(group, {"member": [(ldap3.MODIFY_ADD, [dn])]}), connection.result
        finally:
            connection.unbind()

    def _replace(self, dn: str, name: str, value: str) -> None:
        connection = self.admin()
        try:
            assert connection.modify(dn, {name: [(ldap3.MODIFY_REPLACE, [value])]}), connection.result
        finally:
            connection.unbind()

    def set_primary_group(self, dn: str, rid: int) -> None:
        """The account's primary group (it must be a member first, as AD requires)."""
        self._replace(dn, "primaryGroupID", str(rid))

    def set_control(self, dn: str, control: int) -> None:
        self._replace(dn, "userAccountControl", str(control))

    def attribute(self, dn: str, name: str) -> list[str]:
        connection = self.admin()
        try:
            connection.search(dn, "(objectClass=*)", search_scope=ldap3.BASE, attributes=[name])
            return [str(v) for v in connection.entries[0][name].values] if connection.entries else []
        finally:
            connection.unbind()

    def disabled(self, dn: str) -> bool:
        return bool(int(self.attribute(dn, "userAccountControl")[0]) & ACCOUNTDISABLE)

    def disable_by_hand(self, dn: str) -> None:
        """What a person does in "Active Directory Users and Computers": set ACCOUNTDISABLE, recording no holder."""
        self.set_control(dn, NORMAL_ACCOUNT | ACCOUNTDISABLE)

    def can_bind(self, dn: str, password: str) -> bool:
        """Independently of the adapter: does a simple bind (over LDAPS) as `dn` succeed now?"""
        connection = self._connection(dn, password)
        try:
            return bool(connection.bind())
        finally:
            connection.unbind()
