"""A real IMAP server for the e-mail intake tests: Dovecot on free ports, started by the tests themselves.

``dovecot -F -c <throwaway config>`` with a maildir in a temporary folder (Debian package ``dovecot-imapd``). Where
Dovecot is not installed the tests that use it are skipped with the reason, unless ``CLAIMFLOW_REQUIRE_IMAP=1`` (as in
CI), where that is a failure. The fixtures (``dovecot``, ``imap_user``) are in ``tests/tasks/conftest.py``.
"""

from __future__ import annotations

import imaplib
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pydantic import SecretStr

from tasks.workflow import Desk
from tests.ports import free_ports

REQUIRE_IMAP = os.environ.get("CLAIMFLOW_REQUIRE_IMAP") == "1"


def _self_signed(folder: Path) -> tuple[Path, Path]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert, private = folder / "cert.pem", folder / "key.pem"
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    private.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    private.chmod(0o600)
    return cert, private


@dataclass
class Dovecot:
    plain_port: int
    tls_port: int
    ca_file: Path
    password: str = "secret"  # a throwaway server's static password

    def settings_for(self, user: str, security: str = "plain") -> dict[str, object]:
        return {
            "mail_imap_host": "localhost" if security != "plain" else "127.0.0.1",
            "mail_imap_port": self.tls_port if security == "tls" else self.plain_port,
            "mail_imap_security": security,
            "mail_imap_user": user,
            "mail_imap_password": SecretStr(self.password),
            "mail_imap_ca_file": self.ca_file,
            "mail_imap_timeout_seconds": 10,
        }

    def connect(self, user: str) -> imaplib.IMAP4:
        imap = imaplib.IMAP4("127.0.0.1", self.plain_port, timeout=10)
        imap.login(user, self.password)
        return imap

    def deliver(self, user: str, *raws: bytes) -> None:
        imap = self.connect(user)
        try:
            for raw in raws:
                status, detail = imap.append("INBOX", None, None, raw)
                assert status == "OK", detail
        finally:
            imap.logout()

    def flags(self, user: str) -> dict[int, bool]:
        """UID -> seen, for every mail in the user's INBOX."""
        imap = self.connect(user)
        try:
            imap.select("INBOX", readonly=True)
            _, data = imap.uid("FETCH", "1:*", "(FLAGS)")
        finally:
            imap.logout()
        seen = {}
        for line in data:
            if isinstance(line, bytes) and b"UID" in line:
                parts = line.decode().replace("(", " ").replace(")", " ").split()
                seen[int(parts[parts.index("UID") + 1])] = "\\Seen" in parts
        return seen


def _unavailable(reason: str) -> None:
    if REQUIRE_IMAP:
        pytest.fail(f"CLAIMFLOW_REQUIRE_IMAP=1 but {reason}")
    pytest.skip(reason)


def _has_user(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def mail_desk(world, dovecot: Dovecot, user: str, security: str = "plain", **extra: object) -> Desk:
    settings = world.desk.settings.model_copy(update={**dovecot.settings_for(user, security), **extra})
    return Desk(rules=world.desk.rules, settings=settings)


def run_dovecot() -> Iterator[Dovecot]:
    """A Dovecot IMAP server on free ports: plain (with STARTTLS) and IMAPS, self-signed certificate, any user
    name logs in with the static password and gets an empty maildir of its own."""
    binary = shutil.which("dovecot") or next((p for p in ("/usr/sbin/dovecot",) if Path(p).exists()), None)
    if binary is None:
        _unavailable("dovecot is not installed (Debian: apt-get install -y dovecot-imapd)")
    assert binary is not None
    folder = Path(tempfile.mkdtemp(prefix="claimflow-dovecot-"))
    folder.chmod(0o755)  # the mail user must reach the maildir
    for name in ("run", "state", "mail"):
        (folder / name).mkdir()
    if os.geteuid() == 0:
        mail_user = pwd.getpwnam("mail" if _has_user("mail") else "nobody")
        internal = "dovecot" if _has_user("dovecot") else mail_user.pw_name
        login = "dovenull" if _has_user("dovenull") else mail_user.pw_name
        os.chown(folder / "mail", mail_user.pw_uid, mail_user.pw_gid)
        uid, gid = mail_user.pw_uid, mail_user.pw_gid
    else:
        me = pwd.getpwuid(os.geteuid())
        internal = login = me.pw_name
        uid, gid = me.pw_uid, me.pw_gid
    cert, key = _self_signed(folder)
    server = Dovecot(*free_ports(2), ca_file=cert)
    (folder / "dovecot.conf").write_text(
        f"""
base_dir = {folder}/run
state_dir = {folder}/state
log_path = {folder}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {internal}
default_login_user = {login}
first_valid_uid = {uid}
first_valid_gid = {gid}
mail_location = maildir:{folder}/mail/%u
passdb {{
  driver = static
  args = password={server.password}
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={folder}/mail/%u
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {server.plain_port}
  }}
  inet_listener imaps {{
    port = {server.tls_port}
    ssl = yes
  }}
}}
"""
    )
    process = subprocess.Popen(
        [binary, "-F", "-c", str(folder / "dovecot.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                imaplib.IMAP4("127.0.0.1", server.plain_port, timeout=2).logout()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    output = process.stdout.read().decode(errors="replace") if process.stdout else ""
                    log = (folder / "dovecot.log").read_text() if (folder / "dovecot.log").exists() else ""
                    _unavailable(f"dovecot did not start (exit {process.poll()}): {output.strip()} {log[-2000:]}")
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.rmtree(folder, ignore_errors=True)
