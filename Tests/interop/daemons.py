"""The built daemons as processes on temporary sockets and free loopback ports, stopped by PID.

A plain module (no pytest), so that the interop tests (through conftest.py) and bench/soak.py share it."""

import json
import os
import select
import signal
import socket
import subprocess
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC_KEY_ID = "AKIDEXAMPLE"
DOC_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
MODEL_ID = "anthropic.claude-3-haiku-20240307-v1:0"
FIXTURE = ROOT / "Tests" / "BudgetConfigTests" / "Fixtures" / "kong-consumer-budgets.yaml"
DECK_ENV = {"DECK_AWS_ACCESS_KEY_ID": DOC_KEY_ID, "DECK_AWS_SECRET_ACCESS_KEY": DOC_SECRET}


def bin_dir() -> Path:
    """Where `swift build` put the executables (BUDGET_BIN_DIR overrides)."""
    if "BUDGET_BIN_DIR" in os.environ:
        return Path(os.environ["BUDGET_BIN_DIR"])
    out = subprocess.run(["swift", "build", "--show-bin-path"], cwd=ROOT, check=True, capture_output=True, text=True)
    return Path(out.stdout.strip())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def read_line(stream, deadline: float) -> str:
    """One line of a child's stdout, or what of it came before `deadline` (a `time.monotonic()` value).

    `readline()` blocks until the line comes, whatever the deadline, so a daemon that hangs silently before its ready
    line would hang the suite. This waits with `select` and reads byte by byte off the descriptor, so that nothing
    past the line is taken from whoever reads the stream next."""
    fd = stream.fileno()
    data = b""
    while not data.endswith(b"\n"):
        remaining = deadline - time.monotonic()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            break
        chunk = os.read(fd, 1)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


def _stderr_target(log):
    """PIPE (the default, for tests that read it), or a file the log is appended to (for long runs: a pipe
    nobody reads fills up and blocks the daemon)."""
    return subprocess.PIPE if log is None else open(log, "a")


def _stderr_text(process, log) -> str:
    if log is not None:
        return Path(log).read_text()[-4000:]
    return process.stderr.read() if process.stderr else ""


class Daemon:
    """A process started by a test; `stop()` ends it by PID, also when the test failed."""

    def __init__(self, args, ready_prefix: str, timeout: float = 30.0, env=None, log=None):
        stderr = _stderr_target(log)
        self.log = log
        self.process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env)
        if log is not None:
            stderr.close()
        self.started = time.monotonic()
        deadline = time.monotonic() + timeout
        line = ""
        while time.monotonic() < deadline:
            line = read_line(self.process.stdout, deadline)
            if line.startswith(ready_prefix) or self.process.poll() is not None:
                break
        if not line.startswith(ready_prefix):
            self.stop()
            raise RuntimeError(f"{args[0]} did not start: {line!r} {_stderr_text(self.process, log)!r}")
        self.ready_line = line.strip()

    @property
    def pid(self) -> int:
        return self.process.pid

    def stop(self):
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
        return self.process.returncode

    def crash(self):
        """kill -9, and reap it."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()


class ControlPlane(Daemon):
    """budget-controld: ready when its admin socket accepts connections."""

    def __init__(self, args, admin_socket, timeout=20.0, log=None):
        if os.path.exists(admin_socket):
            os.unlink(admin_socket)
        stderr = _stderr_target(log)
        self.log = log
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=stderr, text=True)
        if log is not None:
            stderr.close()
        self.started = time.monotonic()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.socket(socket.AF_UNIX) as probe:
                    probe.connect(admin_socket)
                    break
            except OSError:
                if self.process.poll() is not None:
                    raise RuntimeError(f"budget-controld exited: {_stderr_text(self.process, log)!r}")
                time.sleep(0.02)
        self.ready_line = "ready"


class Gateway:
    """The whole product on temporary sockets and free ports: emulator, control plane and proxy.

    `log_dir`: each daemon's standard error goes to a file there (`<program>-<n>.log`) instead of a pipe;
    `proxy_listen`: the proxy's address (a fixed port lets a restarted proxy keep its clients' address)."""

    def __init__(self, binaries: Path, tmp: Path, emulator_args=(), proxy_args=(), config_text=None,
                 controld_args=(), log_dir=None, proxy_listen="127.0.0.1:0"):
        self.binaries = binaries
        self.tmp = tmp
        (tmp / "state").mkdir()
        self.admin = str(tmp / "admin.sock")
        self.control = str(tmp / "control.sock")
        self.controld_args = tuple(controld_args)
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.logs = []
        self.daemons = []
        try:
            self.emulator = self._start([str(binaries / "bedrock-emulator"), "--listen", "127.0.0.1:0", "--threads", "1",
                                         *emulator_args], "listening on ", log=self._log("bedrock-emulator"))
            self.emulator_address = self.emulator.ready_line.removeprefix("listening on ")
            self.start_control_plane()
            config = tmp / "config.yaml"
            config.write_text(config_text if config_text is not None else FIXTURE.read_text())
            out = self.budgetctl("sync", str(config))
            assert out.returncode == 0, out.stderr
            self.proxy = self.start_proxy(*proxy_args, listen=proxy_listen)
        except BaseException:
            self.stop()
            raise

    def _log(self, program):
        if self.log_dir is None:
            return None
        path = self.log_dir / f"{program}-{sum(1 for log in self.logs if log.name.startswith(program + '-')) + 1}.log"
        self.logs.append(path)
        return path

    def _start(self, args, ready, env=None, log=None):
        daemon = Daemon(args, ready, env=env, log=log)
        self.daemons.append(daemon)
        return daemon

    def start_control_plane(self):
        self.controld = ControlPlane([str(self.binaries / "budget-controld"), "--state-dir", str(self.tmp / "state"),
                                      "--control-socket", self.control, "--admin-socket", self.admin,
                                      "--log-level", "warning", *self.controld_args], self.admin,
                                     log=self._log("budget-controld"))
        self.daemons.append(self.controld)
        return self.controld

    def start_proxy(self, *args, listen="127.0.0.1:0"):
        """budget-proxyd on `listen`; with `--status-listen` among `args`, `status_url` is where it serves /status."""
        env = dict(os.environ, AWS_ENDPOINT_URL_BEDROCK_RUNTIME=f"http://{self.emulator_address}")
        proxy = self._start([str(self.binaries / "budget-proxyd"), "--listen", listen,
                             "--control-socket", self.control, "--log-level", "warning", *args], "listening on ", env,
                            log=self._log("budget-proxyd"))
        self.url = "http://" + proxy.ready_line.removeprefix("listening on ")
        if "--status-listen" in args:
            line = read_line(proxy.process.stdout, time.monotonic() + 30).strip()
            assert line.startswith("status on "), line
            self.status_url = "http://" + line.removeprefix("status on ")
        return proxy

    def budgetctl(self, *args, timeout=60):
        env = dict(os.environ, BUDGETCTL_SOCKET=self.admin, **DECK_ENV)
        return subprocess.run([str(self.binaries / "budgetctl"), *args], env=env, capture_output=True, text=True,
                              timeout=timeout)

    def usage(self, consumer):
        out = self.budgetctl("usage", consumer, "--json")
        assert out.returncode == 0, out.stderr
        rows = json.loads(out.stdout)
        return rows[0]["used"] if rows else 0

    def stop(self):
        for daemon in reversed(self.daemons):
            daemon.stop()


REDIS_SERVER = os.environ.get("REDIS_SERVER", "/usr/bin/redis-server")
REDIS_SENTINEL = os.environ.get("REDIS_SENTINEL", "/usr/bin/redis-sentinel")
REDIS_CLI = os.environ.get("REDIS_CLI", "/usr/bin/redis-cli")


class RedisServer:
    """A redis-server (or, with `sentinel_of`, a redis-sentinel) of a test's own on a loopback port, stopped by PID.

    `aof`: appendonly with appendfsync always, so that the data survives kill -9 (`crash()` then `restart()` on
    the same port); without it nothing is saved, and a restart comes back empty. `args`: more options
    (`--requirepass`, `--replicaof`, ...)."""

    def __init__(self, directory: Path, port=None, aof=False, args=(), sentinel_of=None, log_name=None):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.aof = aof
        self.args = tuple(args)
        self.sentinel_of = sentinel_of
        self.log = self.directory / (log_name or f"redis-{self.port}.log")
        self.process = None
        # free_port() binds port 0 and closes it: another process can take the port before redis binds it. A
        # server that exits with "Address already in use" is started again on a new port (when none was asked).
        for attempt in range(3):
            try:
                self.start()
                return
            except RuntimeError as error:
                if port is not None or attempt == 2 or "Address already in use" not in str(error):
                    raise
                self.port = free_port()
                self.log = self.directory / (log_name or f"redis-{self.port}.log")

    def command_line(self):
        if self.sentinel_of is not None:
            master, master_port = self.sentinel_of
            config = self.directory / f"sentinel-{self.port}.conf"
            if not config.exists():  # the sentinel rewrites its config file; keep what it learnt on a restart
                config.write_text(
                    f"port {self.port}\nbind 127.0.0.1\ndir {self.directory}\n"
                    f"sentinel monitor {master} 127.0.0.1 {master_port} 1\n"
                    f"sentinel down-after-milliseconds {master} 1000\n"
                    f"sentinel failover-timeout {master} 5000\n")
            return [REDIS_SENTINEL, str(config), "--logfile", str(self.log)]
        persistence = (["--appendonly", "yes", "--appendfsync", "always", "--appendfilename", f"aof-{self.port}.aof",
                        "--appenddirname", f"aof-{self.port}"]
                       if self.aof else ["--appendonly", "no"])
        return [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--dir",
                str(self.directory), "--logfile", str(self.log), "--daemonize", "no", *persistence, *self.args]

    def start(self, timeout=10.0):
        # Ready when this process's own log (its lines of this run: a restart appends to the file) says its listeners
        # are bound, and the port answers PING: a PING alone could be answered by another process's server.
        ready_line = b"Sentinel ID is" if self.sentinel_of is not None else b"Ready to accept connections"
        log_start = self.log.stat().st_size if self.log.exists() else 0
        self.process = subprocess.Popen(self.command_line(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis on port {self.port} exited {self.process.returncode}: "
                                   f"{self.log.read_text()[-2000:] if self.log.exists() else ''}")
            if self.log_since(log_start).find(ready_line) >= 0 and self.ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"redis on port {self.port} does not answer PING")

    def log_since(self, offset: int) -> bytes:
        try:
            with open(self.log, "rb") as log:
                log.seek(offset)
                return log.read()
        except OSError:
            return b""

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
                # +PONG, or -NOAUTH when a password is required: either way it is up.
                return reply.startswith(b"+PONG") or reply.startswith(b"-NOAUTH")
        except OSError:
            return False

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def cli(self, *args, password=None, check=True) -> str:
        """redis-cli against this server; returns its standard output, stripped."""
        command = [REDIS_CLI, "-h", "127.0.0.1", "-p", str(self.port)]
        env = dict(os.environ)
        if password is not None:
            env["REDISCLI_AUTH"] = password
        out = subprocess.run([*command, *args], capture_output=True, text=True, timeout=10, env=env)
        if check and out.returncode != 0:
            raise RuntimeError(f"redis-cli {args}: {out.stderr}")
        return out.stdout.strip()

    def crash(self):
        """kill -9, and reap it."""
        if self.alive:
            os.kill(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait()

    def restart(self):
        """Starts again on the same port (with its AOF, when it has one)."""
        self.crash()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # the port may take a moment to be free again
            try:
                return self.start()
            except RuntimeError:
                if time.monotonic() >= deadline:
                    raise
                time.sleep(0.1)

    def stop(self):
        if self.alive:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait()
