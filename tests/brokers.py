"""Real brokers for tests and benchmarks: a Mosquitto process on a free loopback port."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def mosquitto_binary() -> str:
    """The mosquitto executable (PATH or /usr/sbin)."""
    found = shutil.which("mosquitto") or (
        "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None
    )
    if not found:
        raise RuntimeError(
            "mosquitto is not installed; .ci/run installs it (apt-get install mosquitto)"
        )
    return found


class MosquittoBroker:
    """A Mosquitto broker on 127.0.0.1:<free port> that a test can kill and restart.

    Defaults avoid Mosquitto's silent-loss traps: unlimited queued messages for slow
    subscribers, ``sys_interval 1`` so ``$SYS/broker/clients/connected`` is fresh.
    """

    def __init__(
        self, port: int | None = None, extra_config: str = "", persistence: bool = False
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"  # where start() waits for the listener
        self.workdir = Path(tempfile.mkdtemp(prefix="consultease-mosq-"))
        self.extra_config = extra_config
        self.persistence = persistence
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = self.workdir / "mosquitto.log"

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    def write_config(self) -> None:
        lines = [
            f"listener {self.port} 127.0.0.1",
            # As root, mosquitto drops to user "mosquitto", which cannot write our temp dir.
            "user root" if os.geteuid() == 0 else "",
            "allow_anonymous true" if "allow_anonymous" not in self.extra_config else "",
            "sys_interval 1",
            "max_queued_messages 0",
            "max_queued_bytes 0",
            "max_inflight_messages 20",
            # As deployed (provisioning's config): small packets must not wait for a delayed ACK.
            "set_tcp_nodelay true" if "set_tcp_nodelay" not in self.extra_config else "",
            f"persistence {'true' if self.persistence else 'false'}",
            f"persistence_location {self.workdir}/",
            f"log_dest file {self.log_path}",
            "log_type error",
            "log_type warning",
            "log_type notice",
            self.extra_config,
        ]
        self.config_path.write_text("\n".join(line for line in lines if line) + "\n")

    def start(self, timeout: float = 10.0) -> MosquittoBroker:
        self.write_config()
        self.proc = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.config_path)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                err = self.proc.stderr.read().decode() if self.proc.stderr else ""
                raise RuntimeError(f"mosquitto exited: {err} {self.read_log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.2):
                    return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"mosquitto did not listen on {self.port}")

    def kill(self) -> None:
        """SIGKILL: the broker dies without a goodbye, as in a crash."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def restart(self) -> None:
        self.kill()
        self.start()

    def read_log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> MosquittoBroker:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.cleanup()


class TcpGate:
    """A loopback TCP proxy in front of a broker that a test can close and open.

    While closed, new connections are refused (accepted and dropped) and open ones are
    cut. Tests use it to decide *when* the service may reach a restarted broker,
    e.g. only after an independent subscriber has resubscribed.
    """

    def __init__(self, target_port: int) -> None:
        import threading

        self.target_port = target_port
        self.port = free_port()
        self._open = threading.Event()
        self._open.set()
        self._stop = threading.Event()
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", self.port))
        self._server.listen(64)
        self._server.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self) -> None:
        import threading

        while not self._stop.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                continue
            if not self._open.is_set():
                client.close()
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port), timeout=2)
                # The 2 s bound is for connecting: a busy broker may leave the link quiet longer.
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()

    def close_gate(self) -> None:
        """Refuse new connections and cut the open ones."""
        self._open.clear()
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def open_gate(self) -> None:
        """Accept connections again."""
        self._open.set()

    def stop(self) -> None:
        self.close_gate()
        self._stop.set()
        self._server.close()
        self._thread.join(2)
