"""Apps the port-forward tests run inside an instance (python3 of the image, stdlib only): an
HTTP server that shows what it received, and a websocket echo server."""

HEADERS_APP = r"""
import hashlib, json, sys, time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

class H(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def _answer(self, body, ctype="application/json"):
        self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def do_GET(self):
        if self.path.startswith("/events"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                chunk = f"data: {i}\n\n".encode()
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/status/"):  # 204 and 304: a head and no body, ever
            self.send_response(int(self.path.rsplit("/", 1)[1]))
            self.send_header("ETag", '"v1"')
            self.end_headers()
            return
        if self.path.startswith("/until-close"):  # no length, no chunks: the body ends at EOF
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Set-Cookie", "a=1")
            self.send_header("Set-Cookie", "b=2")
            self.end_headers()
            for i in range(64):
                self.wfile.write(bytes([i]) * 65536)
            self.close_connection = True
            return
        if self.path == "/chunks":  # chunked, large pieces of known bytes
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(40):
                chunk = bytes([i]) * (100_000 + i)
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            self.wfile.write(b"0\r\n\r\n")
            return
        if self.path.startswith("/not-http"):
            self.wfile.write(b"SSH-2.0-OpenSSH\r\n\r\n")
            self.close_connection = True
            return
        if self.path.startswith("/cut-short"):  # promises more than it sends, then closes
            self.send_response(200)
            self.send_header("Content-Length", "1000000")
            self.end_headers()
            self.wfile.write(b"z" * 1000)
            self.close_connection = True
            return
        if self.path.startswith("/chunks-cut-short"):  # chunks, and no last chunk
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"3e8\r\n" + b"z" * 1000 + b"\r\n")
            self.close_connection = True
            return
        self._answer(json.dumps({"path": self.path, "headers": dict(self.headers)}).encode())
    def do_HEAD(self):
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", "12345")
        self.end_headers()
    def do_POST(self):  # the body's digest: every byte arrived, in order
        if self.headers.get("Expect"):  # its 100 Continue went out alone; the answer comes later
            time.sleep(0.3)
        n = int(self.headers.get("Content-Length") or 0)
        digest = hashlib.sha256()
        if self.headers.get("Transfer-Encoding") == "chunked":
            while (size := int(self.rfile.readline().strip(), 16)) != 0:
                digest.update(self.rfile.read(size))
                self.rfile.readline()
            self.rfile.readline()
        else:
            while n > 0:
                got = self.rfile.read(min(n, 1 << 20))
                digest.update(got)
                n -= len(got)
        self._answer(json.dumps({"sha256": digest.hexdigest(), "expect": self.headers.get("Expect")}).encode())
    def do_PUT(self):
        n = int(self.headers.get("Content-Length") or 0)
        if self.headers.get("Transfer-Encoding") == "chunked":
            data = b""
            while True:
                size = int(self.rfile.readline().strip(), 16)
                if size == 0:
                    self.rfile.readline()
                    break
                data += self.rfile.read(size)
                self.rfile.readline()
        else:
            data = self.rfile.read(n)
        self._answer(json.dumps({"method": "PUT", "length": len(data)}).encode())
    def log_message(self, *a):
        pass

ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
"""

WS_ECHO = r"""
import base64, hashlib, socketserver, struct, sys

class Echo(socketserver.StreamRequestHandler):
    def handle(self):
        key = None
        while True:
            line = self.rfile.readline().decode().strip()
            if not line:
                break
            if line.lower().startswith("sec-websocket-key:"):
                key = line.split(":", 1)[1].strip()
        accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
        self.wfile.write(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                          f"Sec-WebSocket-Accept: {accept}\r\n\r\n").encode())
        while True:
            head = self.rfile.read(2)
            if len(head) < 2:
                return
            opcode, n = head[0] & 15, head[1] & 127
            if n == 126:
                n = struct.unpack(">H", self.rfile.read(2))[0]
            elif n == 127:
                n = struct.unpack(">Q", self.rfile.read(8))[0]
            mask = self.rfile.read(4)
            data = bytes(b ^ mask[i % 4] for i, b in enumerate(self.rfile.read(n)))
            if opcode == 8:
                self.wfile.write(b"\x88\x00")
                return
            if n < 126:
                length = bytes([n])
            elif n < 65536:
                length = b"\x7e" + struct.pack(">H", n)
            else:
                length = b"\x7f" + struct.pack(">Q", n)
            header = bytes([0x80 | opcode]) + length
            self.wfile.write(header + data)

socketserver.ThreadingTCPServer.allow_reuse_address = True
socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
"""
