"""netns_util.py — network namespaces for the tunnel tests (issue 4).

Builds a three-namespace topology with veth pairs, runs commands inside the
namespaces (`ip netns exec`), lets the test process open sockets inside a
namespace (setns(2) on the calling thread, for the socket's creation only),
parses `ss` and scans TCP ports with a non-blocking connect loop.

    client  <--veth-->  gateway  <--veth-->  modelhost
    10.A.1.2/30     10.A.1.1 | 10.A.2.1     10.A.2.2/30

The gateway namespace forwards IPv4 between the two links and the ends have
routes through it, so client -> modelhost is *routable*: a port scan that
meets "connection refused" on every port proves the packets arrived and no
socket answered (not that there was no route).

Everything is named with a per-run tag (pid based) and torn down in
Topology.destroy(), which is safe to call twice and after a partial setup.
"""

import contextlib
import ctypes
import ctypes.util
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
_setns_lock = threading.Lock()


class NetnsUnavailable(Exception):
    pass


def run(args, check=True, timeout=30, **kw):
    p = subprocess.run([str(a) for a in args], capture_output=True, text=True, timeout=timeout, **kw)
    if check and p.returncode != 0:
        raise RuntimeError("%s exited %d: %s%s" % (" ".join(map(str, args)), p.returncode, p.stdout, p.stderr))
    return p


def _setns(fd):
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, "setns: " + os.strerror(e))


@contextlib.contextmanager
def in_netns(name):
    """The calling thread is in network namespace NAME inside the block; sockets
    created there stay in it afterwards. Always restores the original one."""
    with _setns_lock:
        orig = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open("/var/run/netns/" + name, os.O_RDONLY)
        try:
            _setns(target)
            try:
                yield
            finally:
                _setns(orig)
        finally:
            os.close(target)
            os.close(orig)


def check_available():
    """Raises NetnsUnavailable with the reason when namespaces cannot be made."""
    if os.geteuid() != 0:
        raise NetnsUnavailable("not root (euid %d): cannot create network namespaces" % os.geteuid())
    if not shutil.which("ip"):
        raise NetnsUnavailable("no `ip` command (iproute2)")
    if not shutil.which("ss"):
        raise NetnsUnavailable("no `ss` command (iproute2)")
    name = "umbra-probe-%d" % os.getpid()
    p = run(["ip", "netns", "add", name], check=False)
    if p.returncode != 0:
        raise NetnsUnavailable("`ip netns add` failed: %s" % (p.stderr.strip() or p.stdout.strip()))
    try:
        p = run(["ip", "link", "add", "uprb%da" % (os.getpid() % 100000), "netns", name, "type", "veth",
                 "peer", "name", "uprb%db" % (os.getpid() % 100000), "netns", name], check=False)
        if p.returncode != 0:
            raise NetnsUnavailable("cannot create a veth pair: %s" % p.stderr.strip())
    finally:
        run(["ip", "netns", "del", name], check=False)


class Topology:
    """client <-> gateway <-> modelhost, two /30 links, IPv4 forwarding in gateway."""

    def __init__(self, tag=None, octet=None):
        self.tag = tag or "u%d" % (os.getpid() % 100000)
        o = octet if octet is not None else 200 + os.getpid() % 50
        self.ns = {k: "umbra-%s-%s" % (self.tag, k) for k in ("client", "gateway", "modelhost")}
        # addresses (only meaningful inside the namespaces: no clash with the host)
        self.client_ip = "10.%d.1.2" % o
        self.gw_client_ip = "10.%d.1.1" % o       # gateway's client-facing address
        self.gw_model_ip = "10.%d.2.1" % o        # gateway's modelhost-facing address
        self.model_ip = "10.%d.2.2" % o
        self.links = {"c": "%sc0" % self.tag, "gc": "%sg1" % self.tag,
                      "gm": "%sg2" % self.tag, "m": "%sm0" % self.tag}
        self.created = []

    # -- build / destroy ----------------------------------------------------

    def create(self):
        try:
            for role, name in self.ns.items():
                run(["ip", "netns", "add", name])
                self.created.append(name)
            L = self.links
            run(["ip", "link", "add", L["c"], "netns", self.ns["client"], "type", "veth",
                 "peer", "name", L["gc"], "netns", self.ns["gateway"]])
            run(["ip", "link", "add", L["m"], "netns", self.ns["modelhost"], "type", "veth",
                 "peer", "name", L["gm"], "netns", self.ns["gateway"]])
            for ns, dev, addr in ((self.ns["client"], L["c"], self.client_ip),
                                  (self.ns["gateway"], L["gc"], self.gw_client_ip),
                                  (self.ns["gateway"], L["gm"], self.gw_model_ip),
                                  (self.ns["modelhost"], L["m"], self.model_ip)):
                self.sh(ns, "ip", "addr", "add", addr + "/30", "dev", dev)
                self.sh(ns, "ip", "link", "set", dev, "up")
            for ns in self.ns.values():
                self.sh(ns, "ip", "link", "set", "lo", "up")
            self.sh(self.ns["gateway"], "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            self.sh(self.ns["client"], "ip", "route", "add", "default", "via", self.gw_client_ip)
            self.sh(self.ns["modelhost"], "ip", "route", "add", "default", "via", self.gw_model_ip)
        except Exception:
            self.destroy()
            raise
        return self

    def destroy(self):
        errs = []
        for name in list(self.created):
            p = run(["ip", "netns", "del", name], check=False)
            if p.returncode != 0 and "No such file" not in p.stderr:
                errs.append(p.stderr.strip())
            self.created.remove(name)
        return errs

    # -- helpers --------------------------------------------------------------

    def sh(self, ns, *args, check=True, timeout=30):
        return run(["ip", "netns", "exec", ns] + list(args), check=check, timeout=timeout)

    def exec_prefix(self, role):
        return ["ip", "netns", "exec", self.ns[role]]

    def link_local6(self, role, dev):
        """The fe80:: address of dev in role's namespace (None if IPv6 is off)."""
        p = self.sh(self.ns[role], "ip", "-j", "-6", "addr", "show", "dev", dev, check=False)
        try:
            for a in json.loads(p.stdout or "[]"):
                for ai in a.get("addr_info", []):
                    if ai.get("scope") == "link":
                        return ai["local"]
        except ValueError:
            return None
        return None


# ------------------------------------------------------------------ ss ----

def listening_sockets(ns_name, pid=None):
    """[(proto, local address, port, process text)] from `ss -H -ltnup` in ns
    (every listening TCP socket and every bound UDP socket)."""
    p = run(["ip", "netns", "exec", ns_name, "ss", "-H", "-ltnup"])
    out = []
    for ln in p.stdout.splitlines():
        f = ln.split()
        if len(f) < 5:
            continue
        proto, local = f[0], f[4]
        proc = " ".join(f[6:]) if len(f) > 6 else ""
        if pid is not None and ("pid=%d," % pid) not in proc:
            continue
        host, _, port = local.rpartition(":")
        out.append((proto, host, port, proc))
    return out


def is_loopback(host):
    h = host.strip("[]")
    if "%" in h:  # addr%dev (a socket bound to an interface)
        h, dev = h.split("%", 1)
        if dev != "lo":
            return False
    if h in ("*", "0.0.0.0", "::"):
        return False
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        return False


def process_sockets(ns_name, pid):
    """Every socket (any state, TCP/UDP, v4/v6) of process pid, from `ss -tunap`."""
    p = run(["ip", "netns", "exec", ns_name, "ss", "-H", "-tuanp"])
    return [ln for ln in p.stdout.splitlines() if ("pid=%d," % pid) in ln]


# ---------------------------------------------------------------- scan ----

SCAN_SCRIPT = r'''
import errno, json, select, socket, sys, time
host, family, ranges, batch, wait = sys.argv[1], int(sys.argv[2]), json.loads(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
scope = 0
if "%" in host:
    host, dev = host.split("%", 1)
    scope = socket.if_nametoindex(dev)
ports = []
for a, b in ranges:
    ports.extend(range(a, b + 1))
ports = sorted(set(ports))
res = {"open": [], "refused": 0, "unreach": 0, "timeout": [], "other": {}, "n": len(ports)}
t0 = time.monotonic()
for i in range(0, len(ports), batch):
    socks = {}
    ep = select.epoll()
    for p in ports[i:i + batch]:
        s = socket.socket(family, socket.SOCK_STREAM)
        s.setblocking(False)
        addr = (host, p) if family == socket.AF_INET else (host, p, 0, scope)
        rc = s.connect_ex(addr)
        if rc == 0:
            res["open"].append(p); s.close(); continue
        if rc != errno.EINPROGRESS:
            if rc == errno.ECONNREFUSED: res["refused"] += 1
            elif rc in (errno.ENETUNREACH, errno.EHOSTUNREACH): res["unreach"] += 1
            else: res["other"][errno.errorcode.get(rc, str(rc))] = res["other"].get(errno.errorcode.get(rc, str(rc)), 0) + 1
            s.close(); continue
        socks[s.fileno()] = (s, p)
        ep.register(s.fileno(), select.EPOLLOUT | select.EPOLLERR | select.EPOLLHUP)
    end = time.monotonic() + wait
    while socks and time.monotonic() < end:
        for fd, _ in ep.poll(max(0.0, end - time.monotonic())):
            s, p = socks.pop(fd)
            ep.unregister(fd)
            e = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
            if e == 0: res["open"].append(p)
            elif e == errno.ECONNREFUSED: res["refused"] += 1
            elif e in (errno.ENETUNREACH, errno.EHOSTUNREACH): res["unreach"] += 1
            else:
                k = errno.errorcode.get(e, str(e)); res["other"][k] = res["other"].get(k, 0) + 1
            s.close()
    for fd, (s, p) in socks.items():
        res["timeout"].append(p); s.close()
    ep.close()
res["seconds"] = round(time.monotonic() - t0, 3)
print(json.dumps(res))
'''


def scan_tcp(ns_name, host, ranges, family=4, batch=2000, wait=2.0, timeout=120):
    """Non-blocking connect() to every port in ranges [(lo, hi)] of host, from
    namespace ns_name. Returns {"open": [...], "refused": n, "unreach": n,
    "timeout": [...], "other": {...}, "n": n, "seconds": s}."""
    import socket as _s
    fam = _s.AF_INET if family == 4 else _s.AF_INET6
    p = run(["ip", "netns", "exec", ns_name, sys.executable, "-c", SCAN_SCRIPT, host, str(int(fam)),
             json.dumps(ranges), str(batch), str(wait)], timeout=timeout)
    return json.loads(p.stdout)
