"""Build the test-host image and manage fleets of test hosts."""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
IMAGE_DIR = HERE / "image"
CONTAINERS_CONF = HERE / "containers.conf"
IMAGE_NAME = "localhost/sweep-fleet-host"
LABEL = "sweep-fleet.fleet"
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
LOGIN_USER = "ops"
SHARED_MOUNT = "/shared"

# Command -> Debian package that provides it.
TOOLS = {
    "podman": "podman",
    "runc": "runc",
    "mmdebstrap": "mmdebstrap",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


class FleetError(RuntimeError):
    """A test fleet cannot be built or used; the message says how to fix it."""


def require_tools(tools: Iterable[str] = TOOLS) -> None:
    missing = sorted({TOOLS[t] for t in tools if shutil.which(t) is None and not _in_sbin(t)})
    if missing:
        raise FleetError(
            "the test fleet needs these Debian packages: "
            + " ".join(missing)
            + f" (install them with: sudo apt-get install {' '.join(missing)})"
        )


def _in_sbin(tool: str) -> bool:
    return any(Path(d, tool).exists() for d in ("/usr/sbin", "/sbin"))


def podman_env() -> dict[str, str]:
    env = dict(os.environ)
    env["CONTAINERS_CONF"] = str(CONTAINERS_CONF)
    return env


def podman(*args: str, check: bool = True, capture: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(
        ["podman", *args],
        env=podman_env(),
        text=True,
        stdout=subprocess.PIPE if capture else None,
        stderr=subprocess.PIPE if capture else None,
    )
    if check and proc.returncode != 0:
        raise FleetError(f"podman {' '.join(args)} failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc


def _packages() -> list[str]:
    lines = (IMAGE_DIR / "packages.txt").read_text().splitlines()
    return [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]


def _extra_ca_certs() -> list[Path]:
    return sorted(Path("/usr/local/share/ca-certificates").glob("*.crt"))


def image_tag() -> str:
    """The image name for the current recipe: it changes when the recipe does."""
    digest = hashlib.sha256()
    for path in [*sorted(IMAGE_DIR.iterdir()), *_extra_ca_certs()]:
        digest.update(path.name.encode())
        digest.update(path.read_bytes())
    digest.update(SUITE.encode())
    return f"{IMAGE_NAME}:{digest.hexdigest()[:12]}"


def image_exists(tag: str) -> bool:
    return podman("image", "exists", tag, check=False).returncode == 0


def build_image(force: bool = False, log=print) -> str:
    """Build the test-host image unless one for this recipe exists; return its tag."""
    require_tools(["podman", "runc", "mmdebstrap"])
    tag = image_tag()
    if image_exists(tag) and not force:
        return tag
    # Parallel test workers: one builds, the others wait for it and reuse the image.
    lock_path = Path(tempfile.gettempdir()) / "sweep-fleet-image.lock"
    with open(lock_path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if image_exists(tag) and not force:
            return tag
        return _build_image(tag, log)


def _build_image(tag: str, log) -> str:
    if os.geteuid() != 0:
        raise FleetError("building the test-host image needs root (mmdebstrap and podman run as root)")
    mirror = os.environ.get("FLEET_DEBIAN_MIRROR", DEFAULT_MIRROR)
    log(f"building test-host image {tag} from {mirror} (a few minutes, once)")
    with tempfile.TemporaryDirectory(prefix="sweep-fleet-image-") as tmp:
        tarball = Path(tmp) / "rootfs.tar"
        cmd = [
            "mmdebstrap",
            "--quiet",
            "--variant=minbase",
            "--include=" + ",".join(_packages()),
            f'--customize-hook={IMAGE_DIR / "customize.sh"} "$1"',
            SUITE,
            str(tarball),
            mirror,
        ]
        proc = subprocess.run(cmd, text=True, capture_output=True)
        if proc.returncode != 0:
            raise FleetError(f"mmdebstrap failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
        podman(
            "import",
            "--change",
            'CMD ["/sbin/init"]',
            "--change",
            "STOPSIGNAL=SIGRTMIN+3",
            "--change",
            f"LABEL {LABEL}.image=1",
            str(tarball),
            tag,
        )
    # Older images of other recipes are no longer needed.
    for line in podman("images", "--format", "{{.Repository}}:{{.Tag}}", IMAGE_NAME).stdout.split():
        if line != tag:
            podman("rmi", line, check=False)
    return tag


@dataclass(frozen=True)
class Host:
    name: str
    ip: str

    @property
    def container(self) -> str:
        return self.name


class Fleet:
    """A named set of test hosts on their own podman network.

    State (SSH key, known_hosts, inventory) lives in ``state_dir``. An ``offline`` fleet's
    network is internal: its hosts reach this machine and each other, nothing outside
    (no package index, no Debian mirror). ``shared`` is a directory of this machine that
    every host sees at SHARED_MOUNT (a cluster's shared filesystem).
    """

    def __init__(
        self, name: str, state_dir: Path | str, offline: bool = False, shared: Path | str | None = None
    ):
        if not name.replace("-", "").isalnum():
            raise FleetError(f"fleet name must be letters, digits and dashes (got {name!r})")
        self.name = name
        self.state_dir = Path(state_dir).resolve()
        self.network = f"sweep-fleet-{name}"
        self.prefix = f"sf-{name}-"
        self.offline = offline
        self.shared = Path(shared).resolve() if shared else None

    # -- paths -------------------------------------------------------------
    @property
    def key_file(self) -> Path:
        return self.state_dir / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.state_dir / "known_hosts"

    # -- queries -----------------------------------------------------------
    def hosts(self) -> list[Host]:
        out = podman("ps", "--all", "--filter", f"label={LABEL}={self.name}", "--format", "json").stdout
        hosts = []
        for entry in json.loads(out or "[]"):
            name = entry["Names"][0]
            hosts.append(Host(name=name, ip=self._ip(name)))
        return sorted(hosts, key=lambda h: _host_number(h.name))

    def _ip(self, container: str) -> str:
        out = podman("inspect", container, "--format", "{{json .NetworkSettings.Networks}}").stdout
        networks = json.loads(out)
        return networks.get(self.network, {}).get("IPAddress", "")

    def gateway(self) -> str:
        """The address of this machine on the fleet's network (reachable from hosts)."""
        out = podman("network", "inspect", self.network).stdout
        subnets = json.loads(out)[0]["subnets"]
        return subnets[0]["gateway"]

    # -- life cycle ----------------------------------------------------------
    def up(self, count: int, image: str | None = None) -> list[Host]:
        """Make sure the fleet has at least ``count`` running hosts; return all."""
        require_tools()
        image = image or build_image()
        self.state_dir.mkdir(parents=True, exist_ok=True)
        if not self.key_file.exists():
            subprocess.run(
                [
                    "ssh-keygen",
                    "-q",
                    "-t",
                    "ed25519",
                    "-N",
                    "",
                    "-C",
                    f"sweep-fleet-{self.name}",
                    "-f",
                    str(self.key_file),
                ],
                check=True,
            )
        if podman("network", "exists", self.network, check=False).returncode != 0:
            internal = ["--internal"] if self.offline else []
            podman("network", "create", *internal, "--label", f"{LABEL}={self.name}", self.network)
        existing = self.hosts()
        numbers = [_host_number(h.name) for h in existing]
        start = max(numbers, default=0) + 1
        new = [f"{self.prefix}{i}" for i in range(start, start + max(0, count - len(existing)))]
        for name in new:
            self._run_host(name, image)
        hosts = self.hosts()
        self.wait_ready([h for h in hosts if h.name in new] if new else hosts)
        return self.hosts()

    def add(self, count: int = 1, image: str | None = None) -> list[Host]:
        """Add ``count`` hosts; return only the new ones."""
        before = {h.name for h in self.hosts()}
        hosts = self.up(len(before) + count, image=image)
        return [h for h in hosts if h.name not in before]

    def _run_host(self, name: str, image: str) -> None:
        podman(
            "run",
            "--detach",
            "--name",
            name,
            "--hostname",
            name,
            "--label",
            f"{LABEL}={self.name}",
            "--network",
            self.network,
            "--systemd=always",
            "--cap-add",
            "SYS_ADMIN",
            "--tmpfs",
            "/tmp",
            "--volume",
            f"{self.key_file}.pub:/home/{LOGIN_USER}/.ssh/authorized_keys:ro",
            *(["--volume", f"{self.shared}:{SHARED_MOUNT}"] if self.shared else []),
            image,
        )

    def wait_ready(self, hosts: list[Host], timeout: float = 120) -> None:
        """Wait until every host answers SSH and systemd finished booting."""

        def one(host: Host) -> None:
            deadline = time.monotonic() + timeout
            last = ""
            restarted = False
            while time.monotonic() < deadline:
                status = podman("inspect", host.name, "--format", "{{.State.Status}}").stdout.strip()
                if status not in ("running", "created", "configured"):
                    last = f"container is {status}"
                    # A systemd that exited at boot (e.g. out of inotify instances while many
                    # hosts boot at once) gets one more start.
                    if restarted or status != "exited":
                        break
                    restarted = True
                    podman("start", host.name, check=False)
                    host = Host(host.name, self._ip(host.name))  # it may get another address
                    continue
                if _port_open(host.ip, 22):
                    proc = self.ssh(host, "systemctl is-system-running --wait", check=False, timeout=60)
                    state = proc.stdout.strip()
                    if state in ("running", "degraded"):
                        return
                    last = f"{state} {proc.stderr.strip()}"
                time.sleep(0.2)
            logs = podman("logs", "--tail", "30", host.name, check=False).stdout
            raise FleetError(f"host {host.name} ({host.ip}) not ready after {timeout}s: {last}\n{logs}")

        with ThreadPoolExecutor(max_workers=max(1, len(hosts))) as pool:
            list(pool.map(one, hosts))

    def ssh_args(self) -> list[str]:
        return [
            "-i",
            str(self.key_file),
            "-o",
            "IdentitiesOnly=yes",
            "-o",
            f"UserKnownHostsFile={self.known_hosts}",
            "-o",
            "StrictHostKeyChecking=accept-new",
            "-o",
            "BatchMode=yes",
            "-o",
            "ConnectTimeout=5",
            "-o",
            "LogLevel=ERROR",
        ]

    def ssh(
        self,
        host: Host,
        command: str,
        check: bool = True,
        timeout: float = 120,
        user: str = LOGIN_USER,
        input: str | None = None,
    ) -> subprocess.CompletedProcess:
        """Run a command on a host; ``input`` goes to its stdin (keeps secrets off command lines)."""
        proc = subprocess.run(
            ["ssh", *self.ssh_args(), f"{user}@{host.ip}", command],
            text=True,
            capture_output=True,
            timeout=timeout,
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
        )
        if check and proc.returncode != 0:
            raise FleetError(
                f"ssh {host.name}: {command!r} failed ({proc.returncode}): {proc.stderr.strip()}"
            )
        return proc

    def write_inventory(
        self,
        path: Path | str,
        hosts: list[Host] | None = None,
        group: str = "fleet",
        host_vars: dict | None = None,
    ) -> Path:
        """Write an INI inventory as a user would: host, address, user, key."""
        hosts = self.hosts() if hosts is None else hosts
        lines = [f"[{group}]"]
        for host in hosts:
            lines.append(
                f"{host.name} ansible_host={host.ip} ansible_user={LOGIN_USER} "
                f"ansible_ssh_private_key_file={self.key_file}"
            )
        lines += [
            "",
            f"[{group}:vars]",
            # A user keeps a known_hosts of their own; the test fleet keeps one per fleet.
            f"ansible_ssh_common_args='-o UserKnownHostsFile={self.known_hosts} "
            "-o StrictHostKeyChecking=accept-new'",
        ]
        for key, value in (host_vars or {}).items():
            lines.append(f"{key}={value}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(lines) + "\n")
        return path

    def remove_host(self, host: Host) -> None:
        podman("rm", "--force", "--time", "5", host.name, check=False)

    def down(self) -> None:
        """Remove this fleet's hosts and network; nothing else."""
        names = [h.name for h in self.hosts()]
        if names:
            podman("rm", "--force", "--time", "5", *names, check=False)
        nets = podman(
            "network", "ls", "--filter", f"label={LABEL}={self.name}", "--format", "{{.Name}}", check=False
        ).stdout.split()
        for net in nets:
            podman("network", "rm", net, check=False)
        if self.known_hosts.exists():
            self.known_hosts.unlink()


def _host_number(name: str) -> int:
    tail = name.rsplit("-", 1)[-1]
    return int(tail) if tail.isdigit() else 0


def _port_open(ip: str, port: int) -> bool:
    try:
        with socket.create_connection((ip, port), timeout=0.5) as conn:
            banner = conn.recv(4)
            return banner.startswith(b"SSH")
    except OSError:
        return False
