"""Something that is not our daemon, listening where the daemon would.

    python _hostile_server.py SOCKET MODE RECORD [UID]

Prints "ready" once it listens; writes every byte it receives to RECORD.
MODE: garbage (not HTTP), silent (never answers), slow-drip (a byte a second),
flood (an endless answer), lying-202 (accepts another event), huge-length (a
Content-Length of a terabyte), http-500. UID: drop to that uid before binding
(a stranger on a shared machine).
"""

import os
import socket
import sys
import time

path, mode, record = sys.argv[1], sys.argv[2], sys.argv[3]
if len(sys.argv) > 4:
    uid = int(sys.argv[4])
    os.setgid(uid)
    os.setuid(uid)
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path)
os.chmod(path, 0o777)
srv.listen(16)
print("ready", flush=True)


def answer(conn, status, body, extra=""):
    conn.sendall(
        f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n{extra}\r\n".encode()
        + body
    )


while True:
    conn, _ = srv.accept()
    conn.settimeout(2)
    got = b""
    try:
        while b"\r\n\r\n" not in got:
            chunk = conn.recv(65536)
            if not chunk:
                break
            got += chunk
    except OSError:
        pass
    with open(record, "ab") as f:
        f.write(got)
    try:
        if mode == "garbage":
            conn.sendall(b"\x00\xffthis is not http at all\r\n\r\n")
        elif mode == "silent":
            time.sleep(60)
        elif mode == "slow-drip":
            for b in b"HTTP/1.1 202 Accepted\r\n":
                conn.sendall(bytes([b]))
                time.sleep(1)
        elif mode == "flood":
            conn.sendall(b"HTTP/1.1 202 Accepted\r\n")
            while True:
                conn.sendall(b"x-junk: " + b"y" * 65536 + b"\r\n")
        elif mode == "lying-202":
            answer(
                conn,
                "202 Accepted",
                b'{"status":"queued","events":[{"event_id":"01HX5ZQK3M8N9P0R1S2T3V4W5X","lamport_clock":1}]}',
            )
        elif mode == "huge-length":
            answer(conn, "202 Accepted", b"", "content-length: 1099511627776\r\n")
        elif mode == "http-500":
            answer(conn, "500 Internal Server Error", b'{"error":"storage_error","message":"disk on fire"}')
    except OSError:
        pass
    conn.close()
