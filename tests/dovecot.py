"""A real Dovecot IMAP server for tests, with its own configuration, user and Maildirs in a temporary folder."""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from imapclient import IMAPClient

from tests.servers import free_port

DOVECOT = Path("/usr/sbin/dovecot")
DOVEADM = Path("/usr/bin/doveadm")
USER = "pdu@opi.test"
PASSWORD = "p@ss/w%rd secret"  # characters that must be percent-encoded in IMAP_URL
# Without IDLE and MOVE: the intake must poll, and move by COPY, \Deleted and UID EXPUNGE.
MINIMAL_CAPABILITY = "IMAP4rev1 LITERAL+ UIDPLUS UNSELECT NAMESPACE"

CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = pdubot-test-{port}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
log_path = {root}/dovecot.log
default_login_user = {login_user}
default_internal_user = {internal_user}
default_internal_group = {internal_group}
first_valid_uid = 100
first_valid_gid = 1
mail_location = maildir:~/Maildir
{capability}
passdb {{
  driver = passwd-file
  args = {root}/users
}}
userdb {{
  driver = passwd-file
  args = {root}/users
}}
# No chroot for the login and anvil processes, so the same file also works for a user who is not root.
service imap-login {{
  chroot =
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service anvil {{
  chroot =
  # Dovecot slows repeated failed logins from one IP down to 15 s each; tests log in wrongly on purpose.
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


@dataclass(frozen=True)
class Accounts:
    """Who Dovecot runs as: its own users under root, else the user running the tests."""

    login_user: str
    internal_user: str
    internal_group: str
    mail_uid: int
    mail_gid: int

    @classmethod
    def for_this_process(cls) -> Accounts:
        if os.geteuid() == 0:
            # Dovecot refuses to run its login and internal processes, or mail, as root.
            mail = pwd.getpwnam("dovecot")
            return cls("dovenull", "dovecot", "dovecot", mail.pw_uid, mail.pw_gid)
        me = pwd.getpwuid(os.getuid())
        return cls(me.pw_name, me.pw_name, grp.getgrgid(me.pw_gid).gr_name, me.pw_uid, me.pw_gid)


@dataclass(frozen=True)
class Dovecot:
    """A running server with one user, ``USER``, whose password is ``PASSWORD``."""

    host: str
    port: int
    root: Path

    def url(self, folder: str = "INBOX", password: str = PASSWORD) -> str:
        """An IMAP_URL for the test user, percent-encoded as the service expects."""
        return f"imap://{quote(USER, safe='')}:{quote(password, safe='')}@{self.host}:{self.port}/{quote(folder)}"

    @contextmanager
    def client(self, folder: str | None = None) -> Iterator[IMAPClient]:
        """A logged-in client playing the staff member who reads the mailbox, or the mail server delivering."""
        with IMAPClient(self.host, self.port, ssl=False, timeout=10) as client:
            client.login(USER, PASSWORD)
            if folder is not None:
                client.select_folder(folder)
            yield client

    def kick(self) -> None:
        """Drop every connection of the test user, as a server restart or a network failure would."""
        subprocess.run([str(DOVEADM), "-c", str(self.root / "dovecot.conf"), "kick", USER], check=True,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def write_config(root: Path, port: int, accounts: Accounts, capability: str) -> Path:
    mail = root / "mail"
    mail.mkdir()
    os.chown(mail, accounts.mail_uid, accounts.mail_gid)
    (root / "users").write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{accounts.mail_uid}:{accounts.mail_gid}::{mail}/user\n")
    conf = root / "dovecot.conf"
    conf.write_text(CONFIG.format(
        root=root,
        port=port,
        login_user=accounts.login_user,
        internal_user=accounts.internal_user,
        internal_group=accounts.internal_group,
        capability=f"imap_capability = {capability}" if capability else "",
    ))
    return conf


def wait_for_port(host: str, port: int, process: subprocess.Popen[bytes], root: Path, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"dovecot exited with {process.returncode}: {_read_log(root)}")
        try:
            with socket.create_connection((host, port), timeout=1):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError(f"dovecot did not listen on {host}:{port} within {timeout} s: {_read_log(root)}")


def _read_log(root: Path) -> str:
    log = root / "dovecot.log"
    return log.read_text(errors="replace") if log.exists() else "(no log)"


@contextmanager
def dovecot_server(capability: str = "") -> Iterator[Dovecot]:
    """Dovecot on a free loopback port until the block ends; ``capability`` overrides what it advertises."""
    # Not under pytest's tmp_path: that sits in a 0700 folder the unprivileged mail user cannot enter.
    root = Path(tempfile.mkdtemp(prefix="pdubot-dovecot-"))
    root.chmod(0o755)
    port = free_port()
    conf = write_config(root, port, Accounts.for_this_process(), capability)
    # -F keeps the master in the foreground, so the test owns its process and can wait for it to end.
    # Its output goes to log_path; a captured pipe would be held open by every child it starts.
    process = subprocess.Popen([str(DOVECOT), "-F", "-c", str(conf)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    try:
        wait_for_port("127.0.0.1", port, process, root)
        yield Dovecot("127.0.0.1", port, root)
    finally:
        stop(process)
        shutil.rmtree(root, ignore_errors=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)
