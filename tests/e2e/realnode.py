"""A real node beside the kwok nodes: containerd, runc, a CNI bridge and a kubelet running real pods.

The kwok tier proves Kondukt against a real control plane with simulated pods; this tier runs the pods: the
operator's image, the workers' image, real termination messages, real security contexts enforced by a real
kubelet. One real node per machine (the kubelet has fixed paths: /var/lib/kubelet, /var/log/pods), so a lock
file guards it and a second test session waits for the first.

The machine's network rule decides the layout:

- Pods live on the bridge ``kondukt0`` (``10.201.0.0/16``); the host holds its gateway address ``10.201.0.1``.
  Nothing is masqueraded, the bridge is no gateway for the CNI plugin (so IP forwarding is never switched
  on), and a FORWARD rule rejects anything between the pod network and any other network anyway: pods reach
  only this machine.
- The API server listens on the gateway address, port 443, and the service range is ``10.201.0.0/24``: the
  ``kubernetes`` Service's ClusterIP, which the kubelet hands to in-cluster clients, *is* the gateway
  address. No Service VIP, no kube-proxy, no NAT. The kubelet serves on the same address.
- Nothing is pulled: the images (hack/images/build.sh --archives) are imported into containerd before the
  kubelet starts, and containerd sends every registry connection through an HTTP(S) proxy on a loopback port
  where nothing listens (containerd 1.6 has no default-host registry configuration), so a missing image
  fails at once instead of reaching out. The pause image is built here too.

The real node is tainted ``kondukt.io/real-node=true:NoSchedule``; a namespace annotated by
:func:`annotate_for_real_node` (PodNodeSelector and PodTolerationRestriction, enabled in the API server)
sends all its pods there without touching their specs, so the kwok tier's pods never land on it.

Teardown restores what the kubelet and containerd changed (sysctls, iptables chains, the bridge, shims,
container processes, mounts under /var/lib/kubelet and containerd's state, cgroups), and it runs again at
the start of the next session (state.json records the sysctls to restore), so a crashed run never poisons
the next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shlex
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.e2e.controlplane import (
    BUILD_SCRIPT,
    REPO,
    ControlPlane,
    ControlPlaneError,
    _cmdline,
    _set_pdeathsig,
    _tail,
    kill_group,
    sign_certificate,
    wait_for,
    write_kubeconfig,
)
from tests.pids import pid_alive

IMAGES_SCRIPT = REPO / "hack" / "images" / "build.sh"
BRIDGE = "kondukt0"
GATEWAY = "10.201.0.1"
POD_NETWORK = "10.201.0.0/16"
SERVICE_CIDR = "10.201.0.0/24"  # its first address, the `kubernetes` Service's ClusterIP, is GATEWAY
POD_RANGE = ("10.201.1.1", "10.201.255.254")
API_PORT = 443  # the `kubernetes` Service's port is always 443
NODE_NAME = "kondukt-real-node"
NODE_LABEL = "kondukt.io/real-node"
TAINT = f"{NODE_LABEL}=true:NoSchedule"
# Registry connections go here, and are refused: nothing listens on this loopback port.
REFUSING_PROXY = "http://127.0.0.1:9"
# Registries named in containerd's registry configuration as well (it has no catch-all host before 1.7; the
# proxy above catches the others).
REGISTRIES = ("docker.io", "registry-1.docker.io", "registry.k8s.io", "k8s.gcr.io", "gcr.io", "quay.io",
              "ghcr.io", "public.ecr.aws", "mcr.microsoft.com", "registry.example")

HOST_DIR = Path(os.environ.get("KONDUKT_REAL_NODE_DIR", "/var/lib/kondukt/real-node"))
LOCK_FILE = HOST_DIR.parent / "real-node.lock"
STATE_FILE = HOST_DIR / "state.json"
CONTAINERD_ROOT = HOST_DIR / "containerd"
IMPORTED_FILE = HOST_DIR / "imported.json"  # the images CONTAINERD_ROOT holds, unpacked
CONTAINERD_STATE = Path("/run/kondukt/containerd")
CONTAINERD_SOCKET = CONTAINERD_STATE / "containerd.sock"
CNI_CONF_DIR = HOST_DIR / "cni"
CNI_IPAM_DIR = HOST_DIR / "cni-ipam"
CNI_BIN_DIRS = ("/usr/lib/cni", "/opt/cni/bin")
KUBELET_ROOT = Path("/var/lib/kubelet")
POD_LOG_DIRS = (Path("/var/log/pods"), Path("/var/log/containers"))
NETNS_DIR = Path("/run/netns")
# What the kubelet (and nothing else here) changes: restored from state.json on teardown.
# (The kubelet's kernel tunables, and IP forwarding in case a CNI plugin switched it on.)
SYSCTLS = ("vm.overcommit_memory", "vm.panic_on_oom", "kernel.panic", "kernel.panic_on_oops",
           "kernel.keys.root_maxkeys", "kernel.keys.root_maxbytes", "net.ipv4.ip_forward")
FORWARD_CHAIN = "KONDUKT-POD-NETWORK"
PACKAGES = ("runc", "containerd", "iptables", "podman", "debootstrap")  # see .ci/install-node-packages


class RealNodeError(ControlPlaneError):
    """The real node cannot start; the message says what is missing or what failed."""


# ---------------------------------------------------------------------------------------------- helpers
def _run(*args: str, check: bool = True, timeout: float = 60, env: dict[str, str] | None = None,
         ) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)
    if check and proc.returncode != 0:
        raise RealNodeError(f"`{' '.join(args)}` exited with {proc.returncode}: {proc.stderr.strip() or proc.stdout.strip()}")
    return proc


def _sysctl_path(name: str) -> Path:
    return Path("/proc/sys") / name.replace(".", "/")


def read_sysctls() -> dict[str, str]:
    return {name: _sysctl_path(name).read_text().strip() for name in SYSCTLS if _sysctl_path(name).exists()}


def images_dir() -> Path:
    """Where hack/images/build.sh --base debootstrap --archives puts the images for the current sources."""
    out = _run("bash", str(IMAGES_SCRIPT), "--base", "debootstrap", "--print-dir", timeout=60)
    return Path(out.stdout.strip())


def node_images() -> dict[str, Path | str]:
    """The archives to import and the names they carry: {"operator": name, ..., "archives": [paths]}."""
    directory = images_dir()
    if not (directory / ".complete").is_file():
        raise RealNodeError(
            f"the real node's images for the current sources are not built ({directory} is missing): "
            "run `make node-images` (bash hack/images/build.sh --base debootstrap --archives)"
        )
    names: dict[str, Path | str] = dict(json.loads((directory / "images.json").read_text()))
    names["dir"] = directory
    return names


def kubelet_binary() -> Path:
    override = os.environ.get("KONDUKT_BIN_DIR")
    directory = Path(override) if override else Path(
        _run("bash", str(BUILD_SCRIPT), "--bin-dir", timeout=30).stdout.strip())
    kubelet = directory / "kubelet"
    if not os.access(kubelet, os.X_OK):
        raise RealNodeError(f"no kubelet in {directory}: run `make control-plane` (hack/control-plane/build.sh)")
    return kubelet


def check_host() -> None:
    """Root, the Debian packages, and no other containerd/kubelet of ours on this machine."""
    if os.geteuid() != 0:
        raise RealNodeError("the real node needs root (containerd, the kubelet, a bridge, iptables)")
    missing = [b for b in ("containerd", "containerd-shim-runc-v2", "runc", "ctr", "iptables", "ip")
               if _run("sh", "-c", f"command -v {b}", check=False).returncode != 0]
    if not any(Path(d, "bridge").exists() for d in CNI_BIN_DIRS):
        missing.append("the CNI bridge plugin (containernetworking-plugins)")
    if missing:
        raise RealNodeError(f"missing on this machine: {', '.join(missing)}; run `bash .ci/install-node-packages`")


def annotate_for_real_node(cp: ControlPlane, namespace: str) -> None:
    """Send every pod of `namespace` to the real node (and tolerate its taint), without touching pod specs."""
    tolerations = json.dumps([{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}])
    cp.kubectl("annotate", "namespace", namespace, "--overwrite",
               f"scheduler.alpha.kubernetes.io/node-selector={NODE_LABEL}=true",
               f"scheduler.alpha.kubernetes.io/defaultTolerations={tolerations}")


# ---------------------------------------------------------------------------------------------- cleanup
def detached_node() -> str:
    """What is left running of a `make cluster-up` real node ("" if nothing): it holds no lock, its
    state.json and its live processes say it is there."""
    with contextlib.suppress(OSError, ValueError):
        state = json.loads(STATE_FILE.read_text())
        if state.get("detached"):
            alive = {n: p for n, p in state.get("pids", {}).items() if pid_alive(p) and n in _cmdline(p)}
            return ", ".join(f"{n} pid {p}" for n, p in alive.items())
    return ""



def _mounts_under(*prefixes: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if any(point == str(p) or point.startswith(str(p) + "/") for p in prefixes):
            found.append(point)
    return sorted(set(found), key=len, reverse=True)  # deepest first


def _unmount_all(*prefixes: Path) -> None:
    for _ in range(5):  # stacked mounts need several passes; bounded
        points = _mounts_under(*prefixes)
        if not points:
            return
        for point in points:
            _run("umount", "-l", point, check=False)
    left = _mounts_under(*prefixes)
    if left:
        raise RealNodeError(f"could not unmount {left[:5]}")


def _remove_tree(path: Path, *, keep_dir: bool = False) -> None:
    """rm -rf, but never through a mount point that is still there (that could reach the host's files)."""
    if not path.exists():
        return
    if _mounts_under(path):
        raise RealNodeError(f"refusing to delete {path}: it still has mounts {_mounts_under(path)[:3]}")
    # (An unpacked image is tens of thousands of files: minutes on a busy machine.)
    if keep_dir and path.is_dir():
        for child in path.iterdir():
            _run("rm", "-rf", "--one-file-system", str(child), check=False, timeout=900)
    else:
        _run("rm", "-rf", "--one-file-system", str(path), check=False, timeout=900)


def _cgroup_dirs() -> list[Path]:
    """The kubelet's pod cgroups (cgroupfs driver, v1 and the hybrid layout's unified tree)."""
    roots = [p / "kubepods" for p in Path("/sys/fs/cgroup").iterdir() if (p / "kubepods").is_dir()]
    if Path("/sys/fs/cgroup/kubepods").is_dir():
        roots.append(Path("/sys/fs/cgroup/kubepods"))
    return roots


def _cgroup_tree(root: Path) -> list[Path]:
    """Every directory under `root`, `root` first. Containers exit while the tree is walked and their cgroups
    vanish: os.walk skips a directory it can no longer list (Path.rglob raised FileNotFoundError there)."""
    return [Path(directory) for directory, _, _ in os.walk(root)]


def _kill_pod_processes() -> None:
    """SIGKILL every process in the kubelet's pod cgroups (containers, pause), until none is left (bounded)."""
    for _ in range(50):
        pids = set()
        for root in _cgroup_dirs():
            for directory in _cgroup_tree(root):
                with contextlib.suppress(OSError):
                    pids |= {int(p) for p in (directory / "cgroup.procs").read_text().split()}
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)


def _remove_cgroups() -> None:
    for root in _cgroup_dirs():
        for directory in sorted(_cgroup_tree(root)[1:], key=lambda p: len(p.parts), reverse=True):
            with contextlib.suppress(OSError):
                directory.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


def _kill_ours(marker: str) -> None:
    """SIGKILL the processes whose command line names `marker` (our containerd's socket: its shims)."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and marker in _cmdline(int(entry.name)):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(entry.name), signal.SIGKILL)


def _iptables_cleanup() -> None:
    """Remove our FORWARD chain and the kubelet's KUBE-* chains (rules jumping to them first)."""
    for tool in ("iptables", "ip6tables"):
        if _run("sh", "-c", f"command -v {tool}", check=False).returncode != 0:
            continue
        for table in ("filter", "nat", "mangle"):
            listing = _run(tool, "-t", table, "-S", check=False)
            if listing.returncode != 0:
                continue
            lines = listing.stdout.splitlines()
            chains = [line.split()[1] for line in lines if line.startswith("-N ")
                      and (line.split()[1].startswith("KUBE-") or line.split()[1] == FORWARD_CHAIN)]
            if not chains:
                continue
            for line in lines:
                parts = shlex.split(line)
                if parts[0] == "-A" and "-j" in parts and parts[parts.index("-j") + 1] in chains \
                        and parts[1] not in chains:
                    _run(tool, "-t", table, "-D", *parts[1:], check=False)
            for chain in chains:
                _run(tool, "-t", table, "-F", chain, check=False)
            for chain in chains:
                _run(tool, "-t", table, "-X", chain, check=False)


def cleanup(quiet: bool = True, keep_images: bool = False) -> None:
    """Undo everything a real node (running, stopped or crashed) changed on this machine. Idempotent.
    `keep_images`: containerd's root keeps the unpacked images (and nothing else) for the next session."""
    state: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        state = dict(json.loads(STATE_FILE.read_text()))
    for name in ("kubelet", "containerd"):
        pid = state.get("pids", {}).get(name)
        if pid and pid_alive(pid) and name in _cmdline(pid):
            kill_group(pid, grace=10 if name == "kubelet" else 5)
    # A kubelet or containerd of a crashed session (detached, or orphaned), then the pods and the shims.
    _kill_ours(str(HOST_DIR / "kubelet.yaml"))
    _kill_ours(str(HOST_DIR / "containerd.toml"))
    _kill_pod_processes()
    _kill_ours(str(CONTAINERD_SOCKET))
    for netns in NETNS_DIR.glob("cni-*") if NETNS_DIR.is_dir() else ():
        _run("umount", "-l", str(netns), check=False)
        with contextlib.suppress(OSError):
            netns.unlink()
    _unmount_all(KUBELET_ROOT, CONTAINERD_STATE, CONTAINERD_ROOT)
    _remove_tree(KUBELET_ROOT)
    for directory in POD_LOG_DIRS:
        _remove_tree(directory, keep_dir=True)
    _remove_tree(CONTAINERD_STATE)
    if keep_images:
        _remove_tree(CONTAINERD_ROOT / "io.containerd.grpc.v1.cri")  # the CRI's sandboxes and containers
    else:
        IMPORTED_FILE.unlink(missing_ok=True)
        _remove_tree(CONTAINERD_ROOT)
    _remove_tree(CNI_IPAM_DIR)
    for cached in Path("/var/lib/cni/results").glob(f"{BRIDGE}-*") if Path("/var/lib/cni/results").is_dir() else ():
        cached.unlink(missing_ok=True)
    if _run("ip", "link", "show", BRIDGE, check=False).returncode == 0:
        for line in _run("ip", "-o", "link", "show", "master", BRIDGE, check=False).stdout.splitlines():
            port = line.split(":")[1].strip().split("@")[0]
            _run("ip", "link", "del", port, check=False)
        _run("ip", "link", "del", BRIDGE, check=False)
    _iptables_cleanup()
    _remove_cgroups()
    for name, value in state.get("sysctls", {}).items():
        with contextlib.suppress(OSError):
            if _sysctl_path(name).read_text().strip() != value:
                _sysctl_path(name).write_text(value)
    STATE_FILE.unlink(missing_ok=True)
    if not quiet:
        print("real node cleaned up")


# ---------------------------------------------------------------------------------------------- the node
@dataclass
class RealNode:
    """The machine's one real node. ``prepare()`` (lock, clean slate, bridge, firewall) comes before the
    control plane starts (its API server binds the bridge's address); ``start(cp)`` runs containerd and the
    kubelet; ``stop()`` undoes all of it and releases the lock."""

    lock_timeout: float = 1200.0  # another session's real node: wait for it this long
    detached: bool = False  # `make cluster-up`: containerd and the kubelet outlive this process
    images: dict[str, Any] = field(default_factory=dict)
    token: str = field(default_factory=lambda: os.urandom(16).hex())
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    _lock: int | None = None
    _cp: ControlPlane | None = None

    # -- lifecycle
    def prepare(self) -> RealNode:
        check_host()
        self.images = node_images()
        self.kubelet = kubelet_binary()
        HOST_DIR.parent.mkdir(parents=True, exist_ok=True)
        self._lock = os.open(LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RealNodeError(f"another session holds the real node ({LOCK_FILE}) for more than "
                                        f"{self.lock_timeout:.0f}s") from None
                time.sleep(1)
        try:
            running = detached_node()
            if running:
                raise RealNodeError(f"`make cluster-up` runs a real node on this machine ({running}); "
                                    "stop it with `make cluster-down` first")
            # Whatever a crashed session left; its containerd root too (a clean stop leaves no state.json).
            cleanup(keep_images=not STATE_FILE.exists())
            HOST_DIR.mkdir(parents=True, exist_ok=True)
            self._save_state(sysctls=read_sysctls(), pids={}, detached=self.detached)
            self._make_network()
        except BaseException:
            self.stop()
            raise
        return self

    def start(self, cp: ControlPlane, timeout: float = 180) -> RealNode:
        self._cp = cp
        deadline = time.monotonic() + timeout
        try:
            self._write_configs(cp)
            wanted = json.dumps({k: str(v) for k, v in sorted(self.images.items())})
            with contextlib.suppress(OSError):
                if IMPORTED_FILE.read_text() != wanted:
                    IMPORTED_FILE.unlink()
            if not IMPORTED_FILE.exists():
                _remove_tree(CONTAINERD_ROOT)  # other images (older sources): start afresh
            self._spawn("containerd", ["containerd", "--config", str(HOST_DIR / "containerd.toml")], env={
                # Every registry connection goes to a loopback port that refuses it: nothing is ever pulled.
                "HTTP_PROXY": REFUSING_PROXY, "HTTPS_PROXY": REFUSING_PROXY, "NO_PROXY": "",
                "http_proxy": REFUSING_PROXY, "https_proxy": REFUSING_PROXY, "no_proxy": "",
            })
            self._wait("containerd", deadline, lambda: self._ctr("version", check=False).returncode == 0)
            if not IMPORTED_FILE.exists():
                for archive in ("pause", "operator", "workers"):
                    self._ctr("images", "import", str(Path(self.images["dir"]) / f"{archive}.tar"), timeout=300)
                IMPORTED_FILE.write_text(wanted)
            self._spawn("kubelet", [
                str(self.kubelet), f"--config={HOST_DIR / 'kubelet.yaml'}",
                f"--kubeconfig={HOST_DIR / 'kubelet.kubeconfig'}",
                f"--hostname-override={NODE_NAME}", f"--node-ip={GATEWAY}",
                f"--node-labels={NODE_LABEL}=true", "--v=1",
            ])
            self._wait("the real node Ready", deadline, self._ready)
        except BaseException:
            self.stop()
            raise
        return self

    def release(self) -> None:
        """Let go of the lock, leaving the node running (`make cluster-up`: state.json says it is there)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def stop(self) -> None:
        kubelet = self.procs.pop("kubelet", None)
        if kubelet is not None:
            kill_group(kubelet.pid, kubelet, grace=10)
        # With containerd still up, delete the pods' containers (tasks, snapshots): its root then holds only
        # the images, which the next session reuses instead of unpacking them again.
        clean = False
        containerd = self.procs.pop("containerd", None)
        if containerd is not None and containerd.poll() is None:
            _kill_pod_processes()
            with contextlib.suppress(RealNodeError, subprocess.TimeoutExpired):
                tasks = self._ctr("tasks", "ls", "-q").stdout.split()
                for task in tasks:
                    self._ctr("tasks", "delete", "--force", task, check=False)
                containers = self._ctr("containers", "ls", "-q").stdout.split()
                if containers:
                    self._ctr("containers", "delete", *containers)
                clean = not self._ctr("containers", "ls", "-q").stdout.split()
            kill_group(containerd.pid, containerd, grace=10)
        try:
            cleanup(keep_images=clean)
        finally:
            if self._lock is not None:
                os.close(self._lock)  # releases the flock (the children's copies are gone with them)
                self._lock = None

    @property
    def logs(self) -> Path:
        return HOST_DIR / "logs"

    def node_token_line(self) -> str:
        """The kubelet's credentials, a line of the API server's static token file (the Node authorizer's
        `system:node:<name>` in `system:nodes`)."""
        return f'{self.token},system:node:{NODE_NAME},system:node:{NODE_NAME},"system:nodes"'

    # -- internals
    def _save_state(self, **changes: Any) -> None:
        state: dict[str, Any] = {}
        with contextlib.suppress(OSError, ValueError):
            state = dict(json.loads(STATE_FILE.read_text()))
        state.update(changes)
        STATE_FILE.write_text(json.dumps(state, indent=2))

    def _make_network(self) -> None:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        ipv6 = Path(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6")
        if ipv6.exists():
            ipv6.write_text("1")  # the bridge is IPv4 only: no link-local chatter from the host
        _run("ip", "addr", "add", f"{GATEWAY}/{POD_NETWORK.split('/')[1]}", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        # Pods reach the pod network and this machine (its addresses are INPUT, not FORWARD), nothing else;
        # and nothing from elsewhere reaches a pod.
        _run("iptables", "-N", FORWARD_CHAIN)
        _run("iptables", "-A", FORWARD_CHAIN, "-s", POD_NETWORK, "-d", POD_NETWORK, "-j", "RETURN")
        for direction in ("-s", "-d"):
            _run("iptables", "-A", FORWARD_CHAIN, direction, POD_NETWORK, "-j", "REJECT",
                 "--reject-with", "icmp-admin-prohibited")
        _run("iptables", "-I", "FORWARD", "1", "-j", FORWARD_CHAIN)

    def _write_configs(self, cp: ControlPlane) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        CNI_CONF_DIR.mkdir(parents=True, exist_ok=True)
        cni_bin = next(d for d in CNI_BIN_DIRS if Path(d, "bridge").exists())
        (CNI_CONF_DIR / "10-kondukt.conflist").write_text(json.dumps({
            "cniVersion": "0.4.0", "name": BRIDGE,
            "plugins": [{
                "type": "bridge", "bridge": BRIDGE, "isGateway": False, "ipMasq": False, "hairpinMode": True,
                "ipam": {
                    "type": "host-local", "dataDir": str(CNI_IPAM_DIR),
                    "ranges": [[{"subnet": POD_NETWORK, "rangeStart": POD_RANGE[0], "rangeEnd": POD_RANGE[1],
                                 "gateway": GATEWAY}]],
                    # The host's bridge address is the pods' only gateway (and ip_forward stays as it was).
                    "routes": [{"dst": "0.0.0.0/0", "gw": GATEWAY}],
                },
            }],
        }, indent=2))
        (HOST_DIR / "containerd.toml").write_text(f"""\
# Written by tests/e2e/realnode.py: the real node's containerd, with paths of its own.
version = 2
root = "{CONTAINERD_ROOT}"
state = "{CONTAINERD_STATE}"
oom_score = 0
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
                    "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{CONTAINERD_SOCKET}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{HOST_DIR / 'opt'}"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{self.images['pause']}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".registry]
    config_path = "{HOST_DIR / 'registries'}"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{CNI_CONF_DIR}"
    max_conf_num = 1
""")
        for registry in REGISTRIES:
            (HOST_DIR / "registries" / registry).mkdir(parents=True, exist_ok=True)
            (HOST_DIR / "registries" / registry / "hosts.toml").write_text(
                f'server = "{REFUSING_PROXY}"\n\n[host."{REFUSING_PROXY}"]\n  capabilities = ["pull", "resolve"]\n')
        pki = cp.workdir / "pki"
        sign_certificate(pki, "kubelet", f"/CN={NODE_NAME}",
                         f"subjectAltName=IP:{GATEWAY},DNS:{NODE_NAME}\nbasicConstraints=CA:FALSE\n"
                         "keyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
        write_kubeconfig(HOST_DIR / "kubelet.kubeconfig", cp.server, cp.ca_file, self.token,
                         user=f"system:node:{NODE_NAME}")
        (HOST_DIR / "kubelet.yaml").write_text(yaml.safe_dump({
            "apiVersion": "kubelet.config.k8s.io/v1beta1", "kind": "KubeletConfiguration",
            "address": GATEWAY, "port": 10250, "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1", "healthzPort": 10248,
            "tlsCertFile": str(pki / "kubelet.crt"), "tlsPrivateKeyFile": str(pki / "kubelet.key"),
            "authentication": {"anonymous": {"enabled": False}, "webhook": {"enabled": True},
                               "x509": {"clientCAFile": str(pki / "ca.crt")}},
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{CONTAINERD_SOCKET}",
            "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
            # This machine kind: cgroup v1 (hybrid), no systemd, root without CAP_SYS_RESOURCE, swap allowed.
            "failCgroupV1": False, "cgroupDriver": "cgroupfs", "oomScoreAdj": 0, "failSwapOn": False,
            # Never delete the imported images (they cannot be pulled back), never evict for a busy disk.
            "imageGCHighThresholdPercent": 100, "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "resolvConf": "",  # pods get no nameserver: they only ever talk to addresses of this machine
            "serializeImagePulls": False, "maxPods": 110,
            "nodeStatusUpdateFrequency": "4s", "syncFrequency": "10s",
            "shutdownGracePeriod": "0s",
        }, sort_keys=False))

    def _spawn(self, name: str, args: list[str], env: dict[str, str] | None = None) -> None:
        log = open(self.logs / f"{name}.log", "ab")  # noqa: SIM115 - the child owns it
        try:
            proc = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=HOST_DIR,
                env={**os.environ, **(env or {})}, start_new_session=True,
                preexec_fn=None if self.detached else _set_pdeathsig,
            )
        finally:
            log.close()
        self.procs[name] = proc
        self._save_state(pids={n: p.pid for n, p in self.procs.items()})

    def _ctr(self, *args: str, check: bool = True, timeout: float = 30) -> subprocess.CompletedProcess[str]:
        return _run("ctr", "--address", str(CONTAINERD_SOCKET), "--namespace", "k8s.io", *args,
                    check=check, timeout=timeout)

    def _wait(self, what: str, deadline: float, probe: Any) -> None:
        while True:
            for name, proc in self.procs.items():
                if proc.poll() is not None:
                    raise RealNodeError(f"{name} exited with {proc.returncode} while waiting for {what}; "
                                        f"last lines of {self.logs / (name + '.log')}:\n"
                                        f"{_tail(self.logs / (name + '.log'))}")
            with contextlib.suppress(OSError, ValueError, subprocess.TimeoutExpired):
                if probe():
                    return
            if time.monotonic() > deadline:
                logs = "\n".join(f"--- {p.name}\n{_tail(p, 15)}" for p in sorted(self.logs.glob("*.log")))
                raise RealNodeError(f"timed out waiting for {what}; logs in {self.logs}:\n{logs}")
            time.sleep(0.25)

    def _ready(self) -> bool:
        assert self._cp is not None
        status, body = self._cp.api("GET", f"/api/v1/nodes/{NODE_NAME}", timeout=5)
        if status != 200:
            return False
        conditions = (body.get("status") or {}).get("conditions") or []
        return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def wait_pod_phase(cp: ControlPlane, namespace: str, name: str, phases: tuple[str, ...],
                   timeout: float = 120) -> dict[str, Any]:
    """The pod once its phase is one of `phases`."""
    def probe() -> dict[str, Any] | None:
        status, pod = cp.api("GET", f"/api/v1/namespaces/{namespace}/pods/{name}")
        return pod if status == 200 and (pod.get("status") or {}).get("phase") in phases else None
    return wait_for(probe, f"pod {namespace}/{name} in {phases}", timeout=timeout, interval=0.5)
