"""A package index on loopback for the tests (PEP 691 JSON), with wheels made on the spot."""

from __future__ import annotations

import base64
import hashlib
import http.server
import io
import json
import threading
import zipfile


def make_wheel(name: str, version: str, requires: tuple[str, ...] = (), extra: dict | None = None) -> bytes:
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"",
        f"{dist}/METADATA": (
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n"
            + "".join(f"Requires-Dist: {r}\n" for r in requires)
        ).encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
        **(extra or {}),
    }
    record = "".join(
        f"{path},sha256={base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b'=').decode()},{len(data)}\n"
        for path, data in files.items()
    )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for path, data in files.items():
            archive.writestr(path, data)
        archive.writestr(f"{dist}/RECORD", record + f"{dist}/RECORD,,\n")
    return buffer.getvalue()


class Index:
    """A PEP 691 index on loopback: projects' files, with a count of requests and a way to
    serve other bytes than the listed hash says."""

    def __init__(self, files: dict[str, dict[str, bytes]]):
        self.files = files
        self.tampered: set[str] = set()
        self.requests: list[str] = []
        index = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_HEAD(self):  # uv asks for a wheel's size before reading its metadata
                self.do_GET(head=True)

            def do_GET(self, head=False):
                index.requests.append(self.path)
                parts = self.path.strip("/").split("/")
                if parts[0] == "simple" and len(parts) == 2 and parts[1] in index.files:
                    listed = [
                        {
                            "filename": f,
                            "url": f"../../files/{f}",
                            "hashes": {"sha256": hashlib.sha256(d).hexdigest()},
                        }
                        for f, d in index.files[parts[1]].items()
                    ]
                    body = json.dumps(
                        {"meta": {"api-version": "1.1"}, "name": parts[1], "files": listed}
                    ).encode()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/vnd.pypi.simple.v1+json")
                elif parts[0] == "files" and len(parts) == 2:
                    data = next((d[parts[1]] for d in index.files.values() if parts[1] in d), None)
                    if data is None:
                        self.send_error(404)
                        return
                    body = data + (b"tampered" if parts[1] in index.tampered else b"")
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                else:
                    self.send_error(404)
                    return
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/simple"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()
