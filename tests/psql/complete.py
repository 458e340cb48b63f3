"""psql's tab completion against a server (run by tests/psql_catalog.rs): types each line
given on the command line into an interactive psql on a pseudo-terminal, presses Tab, and
prints the line as psql completed it (psql asks the server's catalog for the names)."""
import os
import pty
import re
import select
import sys
import time


def complete(port, typed):
    pid, fd = pty.fork()
    if pid == 0:
        os.execvp("psql", ["psql", "-h", "127.0.0.1", "-p", port, "-U", "openclaw", "-d", "openclaw", "-X"])
    out = b""

    def read(seconds):
        nonlocal out
        end = time.time() + seconds
        while time.time() < end:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                try:
                    out += os.read(fd, 65536)
                except OSError:
                    return

    def wait_for(pattern, seconds=20):
        end = time.time() + seconds
        while time.time() < end and not re.search(pattern, out.decode(errors="replace")):
            read(0.1)

    wait_for(r"=# ")
    start = len(out)
    os.write(fd, typed.encode() + b"\t")
    # The completion is written when psql has the catalog's answer: wait until the echo
    # stops changing.
    last = None
    while last != out:
        last = out
        read(0.5)
    os.write(fd, b"\x15\\q\n")
    read(0.3)
    try:
        os.kill(pid, 9)
    except ProcessLookupError:
        pass
    os.waitpid(pid, 0)
    echoed = out[start:].decode(errors="replace").split("\r")[0]
    return re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", echoed)


if __name__ == "__main__":
    port = sys.argv[1]
    for typed in sys.argv[2:]:
        print(complete(port, typed))
