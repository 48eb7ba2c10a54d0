"""A minimal IMAP client over a raw socket for exact transcripts (imaplib hides response codes).

Each command returns (untagged_lines, tagged_line); literals are read in full and kept inline.
"""
import re
import socket

LITERAL = re.compile(rb"\{(\d+)\+?\}\r\n$")


class RawImap:
    def __init__(self, port, host="127.0.0.1", timeout=10.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.n = 0
        self.greeting = self.readline()

    def readline(self):
        """One response line; a line ending in a literal includes the literal and the rest."""
        line = b""
        while True:
            while b"\r\n" not in self.buf:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk
            part, self.buf = self.buf.split(b"\r\n", 1)
            line += part + b"\r\n"
            m = LITERAL.search(line)
            if not m:
                return line[:-2].decode("utf-8", "replace")
            size = int(m.group(1))
            while len(self.buf) < size:
                chunk = self.sock.recv(65536)
                if not chunk:
                    raise ConnectionError("server closed the connection")
                self.buf += chunk
            line += self.buf[:size]
            self.buf = self.buf[size:]

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode())

    def command(self, text, tag=None):
        """Sends `tag text` and reads up to the tagged reply."""
        self.n += 1
        tag = tag or "t%d" % self.n
        self.send("%s %s\r\n" % (tag, text))
        return self.read_until(tag)

    def read_until(self, tag):
        untagged = []
        while True:
            line = self.readline()
            if line.startswith(tag + " "):
                return untagged, line
            untagged.append(line)

    def login(self, user, password):
        _, tagged = self.command('LOGIN "%s" "%s"' % (user, password))
        assert " OK " in tagged, tagged
        return tagged

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass
