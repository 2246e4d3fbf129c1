"""Run a real, throwaway OpenSSH sshd on a loopback port for tests and benchmarks."""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import weakref
from pathlib import Path
from types import TracebackType
from typing import Self

__all__ = [
    "HungServer",
    "OpenSSHServer",
    "find_sshd",
    "free_port",
    "openssh_version",
    "slow_login_script",
]

_PRIVSEP_DIR = Path("/run/sshd")


def find_sshd() -> str | None:
    """Return the absolute path of the sshd binary, or None if it is not installed."""
    # /usr/sbin is often missing from a non-root user's PATH, so look there first.
    if os.access("/usr/sbin/sshd", os.X_OK):
        return "/usr/sbin/sshd"
    found = shutil.which("sshd")
    # sshd refuses to re-exec itself unless started with an absolute path.
    return os.path.abspath(found) if found else None


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@functools.cache
def openssh_version(sshd: str | None = None) -> tuple[int, int] | None:
    """Return sshd's (or ssh's) OpenSSH (major, minor) version, None if unknown."""
    # sshd only gained -V in 9.x, but older ones print the version in their usage
    # text on an unknown option; both go to stderr, so either way we can parse it.
    candidates = [c for c in (sshd or find_sshd(), shutil.which("ssh")) if c]
    for binary in candidates:
        try:
            result = subprocess.run(
                [binary, "-V"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            continue
        match = re.search(r"OpenSSH_(\d+)\.(\d+)", result.stderr + result.stdout)
        if match:
            return int(match[1]), int(match[2])
    return None


def slow_login_script(workdir: Path | str, seconds: float) -> str:
    """Write a ForceCommand script that stalls like a slow login shell; return it."""
    path = Path(workdir) / f"slow_login_{seconds:g}.sh"
    path.write_text(
        "#!/bin/sh\n"
        f"sleep {seconds:g}\n"
        'if [ -n "$SSH_ORIGINAL_COMMAND" ]; then\n'
        '    exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'
        "fi\n"
        "exec /bin/sh\n"
    )
    path.chmod(0o755)
    return str(path)


def _ssh_keygen() -> str:
    keygen = shutil.which("ssh-keygen")
    if keygen is None:
        raise RuntimeError("ssh-keygen not found; install openssh-client")
    return keygen


def _generate_key(path: Path, comment: str) -> None:
    # ssh-keygen asks "Overwrite (y/n)?" on stdin when the file exists.
    path.unlink(missing_ok=True)
    path.with_name(path.name + ".pub").unlink(missing_ok=True)
    subprocess.run(
        [
            _ssh_keygen(),
            "-q",
            "-t",
            "ed25519",
            "-N",
            "",
            "-C",
            comment,
            "-f",
            str(path),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )


def _quote(path: Path) -> str:
    # sshd_config splits arguments on whitespace but honours double quotes.
    return f'"{path}"'


def _descendants(pid: int) -> list[int]:
    """Return all live descendants of pid (Linux /proc only; empty elsewhere)."""
    children: dict[int, list[int]] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return []
    for entry in entries:
        if not entry.isdigit():
            continue
        try:
            stat = Path("/proc", entry, "stat").read_text()
        except OSError:
            continue
        # comm may contain spaces and parentheses; ppid comes right after the last ")".
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _kill_quietly(pid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.kill(pid, sig)


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    # Per-connection sshd processes call setsid() and outlive a SIGTERM to the
    # listener, so established sessions would keep working after "stop"; take
    # them down too so that stop() looks like the host going away.
    if proc.poll() is None:
        sessions = _descendants(proc.pid)
        proc.terminate()
        for pid in sessions:
            _kill_quietly(pid, signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pid in sessions:
            _kill_quietly(pid, signal.SIGKILL)


class OpenSSHServer:
    """A real sshd on 127.0.0.1 that lets the current user in with a generated key."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        force_command: str | None = None,
        max_startups: int | None = None,
        max_sessions: int | None = None,
        extra_config: str = "",
        host: str | None = None,
        netns: str | None = None,
        host_certificate: bool = False,
    ) -> None:
        """`netns`: run sshd inside that network namespace (listening on `host`, an
        address of the namespace); `host_certificate`: present the host key with a
        certificate (sign it with sign_host_key first)."""
        if host is not None:
            self.host = host
        self.netns = netns
        self.host_certificate = host_certificate
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._fixed_port = port is not None
        self.port = port if port is not None else free_port()
        self.force_command = force_command
        self.max_startups = max_startups
        self.max_sessions = max_sessions
        self.extra_config = extra_config
        self.user = pwd.getpwuid(os.getuid()).pw_name

        sshd = find_sshd()
        if sshd is None:
            raise RuntimeError("sshd not found; install openssh-server")
        self.sshd = sshd
        self.config_path = self.workdir / "sshd_config"
        self.log_path = self.workdir / "sshd.log"
        self.pid_path = self.workdir / "sshd.pid"
        self.authorized_keys = self.workdir / "authorized_keys"
        self.host_key = self.workdir / "ssh_host_ed25519_key"
        self.client_key = self.workdir / "client_ed25519_key"

        _generate_key(self.host_key, "openssh-test-host")
        _generate_key(self.client_key, f"{self.user}@openssh-test-client")
        self.authorized_keys.write_text(self._public_line(self.client_key) + "\n")

        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None

    # -- keys --------------------------------------------------------------

    @staticmethod
    def _public_line(private_key: Path) -> str:
        fields = private_key.with_name(private_key.name + ".pub").read_text().split()
        return f"{fields[0]} {fields[1]}"

    def host_public_key(self) -> str:
        """Return the host key as an ``ssh-ed25519 AAAA...`` line, without a comment."""
        return self._public_line(self.host_key)

    def known_hosts_line(self) -> str:
        """Return a known_hosts line for this server, in ``[host]:port key`` form."""
        return f"[{self.host}]:{self.port} {self.host_public_key()}"

    def fingerprint(self) -> str:
        """Return the host key fingerprint as ``ssh-keygen -lf`` shows it: SHA256:..."""
        blob = base64.b64decode(self.host_public_key().split()[1])
        digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
        return f"SHA256:{digest}"

    @property
    def host_cert(self) -> Path:
        return self.host_key.with_name(self.host_key.name + "-cert.pub")

    def sign_host_key(self, ca_key: Path, principal: str | None = None) -> None:
        """Certify the host key with a CA (ssh-keygen -s), for @cert-authority tests."""
        subprocess.run([_ssh_keygen(), "-q", "-s", str(ca_key), "-I", "workdeck-test-host",
                        "-h", "-n", principal or self.host, "-V", "-5m:+1d",
                        str(self.host_key) + ".pub"], check=True, capture_output=True,
                       stdin=subprocess.DEVNULL)

    def regenerate_host_key(self) -> None:
        """Replace the host key; restart the server to present the new one."""
        _generate_key(self.host_key, "openssh-test-host")

    # -- config ------------------------------------------------------------

    def _config_text(self) -> str:
        # sshd keeps the FIRST value it sees for most keywords, so caller-supplied
        # settings go on top to override ours; a Match block must stay last.
        extra_head, match_tail = self.extra_config, ""
        found = re.search(r"^\s*Match\s", self.extra_config, re.MULTILINE | re.IGNORECASE)
        if found:
            extra_head = self.extra_config[: found.start()]
            match_tail = self.extra_config[found.start() :]

        lines = [
            extra_head.strip(),
            f"ListenAddress {self.host}:{self.port}",
            f"HostKey {_quote(self.host_key)}",
            *([f"HostCertificate {_quote(self.host_cert)}"] if self.host_certificate else []),
            f"PidFile {_quote(self.pid_path)}",
            f"AuthorizedKeysFile {_quote(self.authorized_keys)}",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            # PAM cannot work for a non-root sshd and key auth does not need it. As
            # root, sshd then refuses accounts locked with "!" in /etc/shadow
            # ("account is locked"); pass extra_config="UsePAM yes" for those.
            "UsePAM no",
            # The workdir lives under a world-writable /tmp, which StrictModes rejects.
            "StrictModes no",
            # CI runs the suite as root.
            "PermitRootLogin prohibit-password",
            "PrintMotd no",
            "PrintLastLog no",
            "LogLevel VERBOSE",
            "Subsystem sftp internal-sftp",
        ]
        version = openssh_version(self.sshd) or (0, 0)
        if version >= (8, 5):
            lines.append("PerSourceMaxStartups none")
        if version >= (9, 8):
            # Test suites fail logins from 127.0.0.1 on purpose; 9.8+ would then
            # refuse every later connection from that address for a while.
            lines.append("PerSourcePenalties no")
        if self.max_startups is not None:
            # MaxStartups only counts connections that have not authenticated yet;
            # a bare number is a hard cap without the default random early drop.
            lines.append(f"MaxStartups {self.max_startups}")
        if self.max_sessions is not None:
            lines.append(f"MaxSessions {self.max_sessions}")
        if self.force_command is not None:
            lines.append(f"ForceCommand {self.force_command}")
        lines.append(match_tail.strip())
        return "\n".join(line for line in lines if line) + "\n"

    # -- lifecycle ---------------------------------------------------------

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def log(self) -> str:
        """Return what sshd has logged so far (LogLevel VERBOSE)."""
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def start(self, timeout: float = 10) -> None:
        """Start sshd and return once it answers with an SSH banner."""
        if self.running:
            return
        if os.geteuid() == 0:
            # As root sshd chroots its pre-auth child into this directory and
            # dies with "Missing privilege separation directory" without it.
            # Non-root sshd does not chroot, so it needs no such directory. If
            # mkdir fails, sshd's own error message ends up in our RuntimeError.
            with contextlib.suppress(OSError):
                _PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        # Only retry on a port we chose ourselves: free_port() can race with
        # other processes, an explicit port is the caller's business.
        attempts = 1 if self._fixed_port else 3
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                return
            except RuntimeError as exc:
                if attempt + 1 == attempts or "Address already in use" not in str(exc):
                    raise
                self.port = free_port()

    def _start_once(self, timeout: float) -> None:
        self.config_path.write_text(self._config_text())
        # sshd's stderr goes to a file: an undrained pipe would fill up under a
        # benchmark's connection logging and block sshd.
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [*(["ip", "netns", "exec", self.netns] if self.netns else []),
                 self.sshd, "-D", "-e", "-f", str(self.config_path)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self._finalizer = weakref.finalize(self, _terminate, self._proc, 5.0)

        deadline = time.monotonic() + timeout
        while True:
            if self._proc.poll() is not None:
                code = self._proc.returncode
                self.stop()
                raise RuntimeError(f"sshd exited with status {code}:\n{self.log()}")
            if self._banner_ready():
                self._wait_for_probe_to_finish(deadline)
                return
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"sshd did not answer within {timeout}s:\n{self.log()}")
            time.sleep(0.05)

    def _banner_ready(self) -> bool:
        # A listening port is not enough: the banner proves it is our sshd that
        # answers and that it can fork and re-exec per connection.
        try:
            with socket.create_connection((self.host, self.port), timeout=1) as sock:
                data = b""
                while b"\n" not in data:
                    chunk = sock.recv(256)
                    if not chunk:
                        return False
                    data += chunk
                # Say hello back so sshd logs a plain disconnect, not a protocol error.
                sock.sendall(b"SSH-2.0-openssh_py_probe\r\n")
                return data.startswith(b"SSH-")
        except OSError:
            return False

    def _wait_for_probe_to_finish(self, deadline: float) -> None:
        # Until sshd reaps the probe's per-connection child it still counts it
        # against MaxStartups, which would make a small max_startups flaky.
        assert self._proc is not None
        while _descendants(self._proc.pid) and time.monotonic() < deadline:
            time.sleep(0.01)

    def stop(self) -> None:
        """Stop sshd and any sessions it spawned; safe to call repeatedly."""
        if self._finalizer is not None:
            self._finalizer()
            self._finalizer = None
        self._proc = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = "running" if self.running else "stopped"
        return f"<OpenSSHServer {self.user}@{self.host}:{self.port} {state}>"


class HungServer:
    """A loopback TCP server that accepts connections and never sends a byte."""

    host = "127.0.0.1"

    def __init__(self, port: int | None = None) -> None:
        self.port = port or 0
        self._sock: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(128)
        # close() from another thread does not wake a blocked accept() on Linux,
        # so poll with a timeout and check the stop flag.
        sock.settimeout(0.1)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._stop.clear()
        self._thread = threading.Thread(target=self._serve, name="HungServer", daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            # Keep a reference: a garbage-collected socket would close and the
            # client would see EOF instead of silence.
            self._conns.append(conn)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        for conn in self._conns:
            conn.close()
        self._conns.clear()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
