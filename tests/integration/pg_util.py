"""pg_util.py — a throwaway PostgreSQL server for the store tests (issue 6).

Debian 12's `postgresql` package (binaries in /usr/lib/postgresql/15/bin):
`initdb` into a fresh temp dir, `postgres` on 127.0.0.1 at a free port plus
a unix socket in that dir, a role and a database for umbra, and a clean stop
by PID (SIGINT = fast shutdown, then SIGQUIT, then SIGKILL).

PostgreSQL refuses to run as root and CI runs as root, so as root every
server command runs as the `postgres` system user (made by the Debian
package): exec'd directly under that uid (subprocess `user=`, like setpriv,
with no runuser parent in between), so the PID we hold is the postmaster's.
The temp dir is chowned to it. Authentication is `trust` (loopback and the
socket only, in a cluster that lives for one test run).

    with PgServer() as pg:
        os.environ["UMBRA_TEST_PG_URL"] = pg.url    # postgres://umbra@127.0.0.1:PORT/umbra
        pg.psql("SELECT 1")

Durability is traded for speed (fsync off): the cluster is deleted at stop.
A failed start raises PgUnavailable with the server log's tail.
"""

import atexit
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time

PG_BIN = os.environ.get("UMBRA_PG_BIN", "/usr/lib/postgresql/15/bin")
PG_SYSTEM_USER = "postgres"


class PgUnavailable(Exception):
    pass


def _free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def check_available():
    """Raises PgUnavailable with the reason when no server can be started."""
    for tool in ("initdb", "postgres", "pg_isready"):
        if not os.access(os.path.join(PG_BIN, tool), os.X_OK):
            raise PgUnavailable("no %s in %s (Debian package postgresql)" % (tool, PG_BIN))
    if not shutil.which("psql"):
        raise PgUnavailable("no psql (Debian package postgresql-client)")
    if os.geteuid() == 0:
        try:
            pwd.getpwnam(PG_SYSTEM_USER)
        except KeyError:
            raise PgUnavailable("running as root and there is no `%s` user" % PG_SYSTEM_USER)


class PgServer:
    """One temporary cluster. `start()` / `stop()` or use it as a context
    manager; `stop()` is safe to call twice and after a failed start."""

    def __init__(self, user="umbra", db="umbra", base_dir=None, keep=False):
        self.user, self.db = user, db
        self.base_dir = base_dir
        self.keep = keep  # leave the data dir and log behind (debugging)
        self.dir = None
        self.proc = None
        self.port = None
        self.start_seconds = None
        self._as_pg = os.geteuid() == 0

    # ---- paths and URLs ----

    @property
    def data(self):
        return os.path.join(self.dir, "data")

    @property
    def sockdir(self):
        return os.path.join(self.dir, "sock")

    @property
    def log_path(self):
        return os.path.join(self.dir, "postgres.log")

    @property
    def url(self):
        """What umbra's `store:` takes (and UMBRA_TEST_PG_URL); no password:
        trust auth on loopback."""
        return "postgres://%s@127.0.0.1:%d/%s" % (self.user, self.port, self.db)

    @property
    def socket_url(self):
        """The same database over the unix socket."""
        return "postgresql://%s@/%s?host=%s&port=%d" % (self.user, self.db, self.sockdir, self.port)

    def log_tail(self, n=40):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    # ---- running things ----

    def _popen_kw(self):
        kw = {}
        if self._as_pg:
            pw = pwd.getpwnam(PG_SYSTEM_USER)
            kw = dict(user=pw.pw_uid, group=pw.pw_gid, extra_groups=[],
                      env={"PATH": "/usr/bin:/bin", "HOME": self.dir, "LC_ALL": "C"})
        else:
            kw = dict(env=dict(os.environ, LC_ALL="C"))
        return kw

    def _run_pg(self, args, timeout=60):
        p = subprocess.run([str(a) for a in args], capture_output=True, text=True,
                           timeout=timeout, cwd=self.dir, **self._popen_kw())
        if p.returncode != 0:
            raise PgUnavailable("%s exited %d: %s%s" % (args[0], p.returncode, p.stdout, p.stderr))
        return p

    def psql(self, sql, db=None, user=None):
        """Run SQL as the cluster's superuser over the unix socket; returns
        stdout (unaligned, tuples only). Raises on any error."""
        p = subprocess.run(["psql", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1",
                            "-h", self.sockdir, "-p", str(self.port),
                            "-U", user or PG_SYSTEM_USER, "-d", db or "postgres", "-c", sql],
                           capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("psql %r: %s" % (sql, p.stderr.strip()))
        return p.stdout

    def _ready(self):
        p = subprocess.run([os.path.join(PG_BIN, "pg_isready"), "-q", "-h", self.sockdir,
                            "-p", str(self.port), "-d", "postgres"],
                           capture_output=True, timeout=10)
        return p.returncode == 0

    def start(self, timeout=30):
        check_available()
        t0 = time.monotonic()
        self.dir = tempfile.mkdtemp(prefix="umbra-pg-", dir=self.base_dir)
        os.mkdir(self.sockdir)
        if self._as_pg:
            pw = pwd.getpwnam(PG_SYSTEM_USER)
            for d in (self.dir, self.sockdir):
                os.chown(d, pw.pw_uid, pw.pw_gid)
        os.chmod(self.dir, 0o700)
        # -N: no fsync of the new cluster; C locale: byte order, like the store
        self._run_pg([os.path.join(PG_BIN, "initdb"), "-D", self.data, "-U", PG_SYSTEM_USER,
                      "--auth=trust", "-E", "UTF8", "--locale=C", "-N"])
        attempts = 0
        while True:
            attempts += 1
            self.port = _free_port()
            log = open(self.log_path, "ab")
            if self._as_pg:
                os.chown(self.log_path, pwd.getpwnam(PG_SYSTEM_USER).pw_uid, -1)
            self.proc = subprocess.Popen(
                [os.path.join(PG_BIN, "postgres"), "-D", self.data, "-p", str(self.port),
                 "-c", "listen_addresses=127.0.0.1", "-c", "unix_socket_directories=" + self.sockdir,
                 "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
                 "-c", "max_connections=60", "-c", "shared_buffers=32MB",
                 "-c", "log_min_messages=warning", "-c", "logging_collector=off"],
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True, **self._popen_kw())
            log.close()
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and self.proc.poll() is None and not self._ready():
                time.sleep(0.05)
            if self.proc.poll() is None and self._ready():
                break
            tail = self.log_tail()
            self._kill()
            # another process took the port between the probe and the bind
            if "could not bind" in tail and attempts < 5:
                continue
            self.stop()
            raise PgUnavailable("postgres did not start:\n" + tail)
        _live.add(self)
        self.psql('CREATE ROLE "%s" LOGIN' % self.user)
        self.psql('CREATE DATABASE "%s" OWNER "%s"' % (self.db, self.user))
        self.start_seconds = time.monotonic() - t0
        return self

    def _kill(self):
        """Stop the postmaster by its PID: fast shutdown, then harder."""
        p, self.proc = self.proc, None
        if p is None:
            return
        for sig, wait in ((signal.SIGINT, 10), (signal.SIGQUIT, 5), (signal.SIGKILL, 5)):
            if p.poll() is not None:
                break
            try:
                os.kill(p.pid, sig)
            except ProcessLookupError:
                break
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                continue

    def stop(self):
        self._kill()
        _live.discard(self)
        if self.dir and not self.keep:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()


# The guard: a test that dies between start and stop still stops its server.
_live = set()


@atexit.register
def _stop_all():
    for s in list(_live):
        s.stop()


if __name__ == "__main__":
    # Manual use: start a server, print its URL, stop on Enter or Ctrl-C.
    pg = PgServer(keep=bool(os.environ.get("UMBRA_PG_KEEP")))
    pg.start()
    print("URL %s" % pg.url, flush=True)
    print("started in %.2f s; data in %s; press Enter to stop" % (pg.start_seconds, pg.dir), flush=True)
    try:
        input()
    except (EOFError, KeyboardInterrupt):
        pass
    pg.stop()
