"""The HTTPS path production uses: budget-proxyd to a Bedrock endpoint behind TLS, with a test CA of its own.

A TLS terminator (Python's ssl) with a certificate from a CA made for the test forwards to the emulator. The
proxy trusts that CA only when told to with AWS_CA_BUNDLE, as the AWS SDKs are."""

import asyncio
import os
import ssl
import subprocess
import threading

from conftest import Daemon, Gateway, FIXTURE

import http.client
import json


def make_ca_and_server_cert(directory):
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=directory, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "1",
            "-subj", "/CN=budget-gateway test CA", "-addext", "basicConstraints=critical,CA:TRUE",
            "-addext", "keyUsage=critical,keyCertSign,cRLSign")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
            "-subj", "/CN=127.0.0.1")
    (directory / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
                                       "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
            "-out", "server.pem", "-days", "1", "-extfile", "ext.cnf")


class TLSTerminator:
    """TLS on a free loopback port, each connection forwarded to `upstream` (host, port) in the clear."""

    def __init__(self, cert, key, upstream):
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        self.upstream = upstream
        self.loop = asyncio.new_event_loop()
        ready = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(ready,), daemon=True)
        self.thread.start()
        assert ready.wait(10)

    def _run(self, ready):
        asyncio.set_event_loop(self.loop)

        async def pipe(reader, writer):
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except (ConnectionError, ssl.SSLError):
                pass
            finally:
                writer.close()

        async def handle(reader, writer):
            try:
                up_reader, up_writer = await asyncio.open_connection(*self.upstream)
            except OSError:
                writer.close()
                return
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        self.server = self.loop.run_until_complete(
            asyncio.start_server(handle, "127.0.0.1", 0, ssl=self.context))
        self.port = self.server.sockets[0].getsockname()[1]
        ready.set()
        self.loop.run_forever()

    def stop(self):
        self.loop.call_soon_threadsafe(self.server.close)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def chat(url, key="dev-team-key"):
    host, port = url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/ai/budget", body=json.dumps({"messages": [{"role": "user", "content": "Hello"}]}),
                       headers={"Content-Type": "application/json", "apikey": key})
    response = connection.getresponse()
    return response.status, json.loads(response.read())


def test_bedrock_over_https_with_a_private_ca_in_aws_ca_bundle(binaries, tmp_path):
    certs = tmp_path / "certs"
    certs.mkdir()
    make_ca_and_server_cert(certs)
    stack = None
    terminator = None
    trusting = None
    try:
        # The gateway first, with an upstream_url we fill in once the terminator's port is known.
        (tmp_path / "gw").mkdir()
        stack = Gateway(binaries, tmp_path / "gw", config_text=FIXTURE.read_text())
        host, port = stack.emulator_address.split(":")
        terminator = TLSTerminator(str(certs / "server.pem"), str(certs / "server.key"), (host, int(port)))
        config = FIXTURE.read_text().replace(
            "                  bedrock:\n",
            f"                  upstream_url: https://127.0.0.1:{terminator.port}\n                  bedrock:\n")
        (tmp_path / "https.yaml").write_text(config)
        out = stack.budgetctl("sync", str(tmp_path / "https.yaml"))
        assert out.returncode == 0, out.stderr

        # The proxy that trusts only the system's roots refuses the private CA, with a plain message.
        status, body = chat(stack.url)
        assert status == 502, body
        assert body["error"]["message"] == (f"cannot reach Bedrock at https://127.0.0.1:{terminator.port}; "
                                            "the gateway's log has the reason")

        # Told about the CA, a proxy reaches Bedrock over TLS and charges what it reported.
        env = dict(os.environ, AWS_CA_BUNDLE=str(certs / "ca.pem"))
        trusting = Daemon([str(binaries / "budget-proxyd"), "--listen", "127.0.0.1:0", "--control-socket",
                           stack.control, "--log-level", "warning"], "listening on ", env=env)
        url = "http://" + trusting.ready_line.removeprefix("listening on ")
        status, body = chat(url)
        assert status == 200, body
        assert body["usage"]["total_tokens"] > 0

        # An unreadable bundle is a start-up error that names it.
        bad = subprocess.run([str(binaries / "budget-proxyd"), "--listen", "127.0.0.1:0", "--control-socket",
                              stack.control], env=dict(os.environ, AWS_CA_BUNDLE=str(certs / "missing.pem")),
                             capture_output=True, text=True, timeout=30)
        assert bad.returncode != 0
        assert "AWS_CA_BUNDLE" in bad.stderr and "missing.pem" in bad.stderr
    finally:
        if trusting:
            trusting.stop()
        if terminator:
            terminator.stop()
        if stack:
            stack.stop()
