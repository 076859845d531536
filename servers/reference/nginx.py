"""nginx as the native reference line: `GET /` answered with sockbench's body.

One process (`master_process off`): the same event loop a single worker runs, and it
dies with the launcher (PR_SET_PDEATHSIG), where a worker would outlive a killed
master. Pinned like the models: it inherits the launcher's CPU set. It binds the
launcher's port with SO_REUSEPORT while the launcher holds it, so no other process
can take the port in between; the launcher's socket closes before the ready line, so
every connection reaches nginx. Stock nginx cannot echo a POST body (that needs a
third-party module), so it serves `GET /` only (servers.REFERENCES).
"""

from __future__ import annotations

import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from common.process import die_with_parent
from servers.protocol import GET_BODY
from servers.reference.probe import answers

START_S = 10.0

CONFIG = """\
daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log stderr warn;
events {{ worker_connections {connections}; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 1000000000;
    keepalive_timeout 300s;
    server {{
        listen {address} reuseport backlog={backlog};
        location = / {{
            default_type text/plain;
            return 200 "{body}";
        }}
        location / {{
            return 404;
        }}
    }}
}}
"""


def config(address: str, backlog: int, folder: Path) -> str:
    body = GET_BODY.decode().replace("\n", "\\n")
    # as many connections as descriptors (the launcher raised the limit), a few spare
    connections = max(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 32)
    return CONFIG.format(
        dir=folder, address=address, backlog=backlog, body=body, connections=connections
    )


def serve(
    listener: socket.socket,
    protocol: str,
    ready: Callable[[dict[str, Any]], None],
    backlog: int,
) -> None:
    host, port = listener.getsockname()[:2]
    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    binary = shutil.which("nginx") or "nginx"
    with tempfile.TemporaryDirectory(prefix="sockbench-nginx-") as name:
        folder = Path(name)
        (folder / "nginx.conf").write_text(config(address, backlog, folder))
        proc = subprocess.Popen(
            [binary, "-p", str(folder), "-c", str(folder / "nginx.conf"), "-e", "stderr"],
            stdin=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        try:
            # nginx writes its pid file after it has bound its listening sockets
            deadline = time.monotonic() + START_S
            while not (folder / "nginx.pid").exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"nginx exited with code {proc.returncode} at start")
                if time.monotonic() > deadline:
                    raise RuntimeError(f"nginx did not start within {START_S:g} s")
                time.sleep(0.01)
            listener.close()  # from now on every connection is nginx's
            if reason := answers(host, port, START_S):
                raise RuntimeError(f"nginx is not answering: {reason}")
            version = subprocess.run(
                [binary, "-v"], capture_output=True, text=True, check=False
            ).stderr.strip()
            ready({"server_pids": [proc.pid], "version": version})
            code = proc.wait()
            raise RuntimeError(f"nginx exited with code {code} while serving")
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)  # fast shutdown: drops idle keep-alives
                try:
                    proc.wait(5)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
