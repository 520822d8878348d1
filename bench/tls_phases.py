#!/usr/bin/env python3
"""Per-connection phases of a TLS load from a packet capture, as seen on the server's side.

Capture a second or two of a bench/tls.sh row on loopback, for one proxy, then read it:

    tcpdump -i lo -nn -s 96 -w /tmp/alb.pcap 'host 127.0.108.4 and port 8443' & sleep 1.5; kill $!
    bench/tls_phases.py /tmp/alb.pcap 127.0.108.4.8443

For each connection that starts in the capture: from the ClientHello to the server's first
flight (the handshake's wait and work), from the client's request to the end of the server's
response (the request's wait and work), and from the client's Finished to its request (the
client's own delay). The response's end is the server's last segment with data before its FIN,
not counting a closing alert; the first segment after the request is no measure of it, as on
TLS 1.3 it is usually the session tickets the server sends once the client's Finished is in. Also the sizes of the first flights: a full handshake's carries the certificate, a
resumed one's does not. It assumes the client writes ClientHello, Finished and request as
separate segments, as wrk and bench/tlsload do. Needs tcpdump (Debian's tcpdump package).
"""
import collections
import subprocess
import sys

# The server's FIN, in a connection's list of segments with data.
FIN = None
# A TLS closing alert's record: 24 bytes on TLS 1.3, 31 on TLS 1.2 with AES-GCM.
CLOSING_ALERT = 31


def main(pcap: str, server: str) -> None:
    out = subprocess.run(["tcpdump", "-nn", "-tt", "-r", pcap], capture_output=True, text=True, check=True).stdout
    conns = collections.defaultdict(list)
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 5 or "length" not in line:
            continue
        length = int(line.rsplit("length", 1)[1].split()[0].strip(":"))
        t, src, dst = float(fields[0]), fields[2], fields[4].rstrip(":")
        to_server = dst == server
        if length == 0:
            if to_server or "F" not in fields[6]:
                continue
            length = FIN
        port = (src if to_server else dst).rsplit(".", 1)[1]
        conns[port].append((t, to_server, length))
    hello, request, client, flights = [], [], [], collections.Counter()
    for segments in conns.values():
        if not segments or not segments[0][1]:
            continue  # began before the capture
        sent = [s for s in segments if s[1]]
        answered = [s for s in segments if not s[1] and s[2] is not FIN]
        if len(sent) < 3 or not answered:
            continue
        first = next((s for s in answered if s[0] >= sent[0][0]), None)
        if first is None:
            continue
        hello.append((first[0] - sent[0][0]) * 1e6)
        flights[first[2]] += 1
        # Up to the FIN (a connection closed after its response), else every segment.
        fin = next((i for i, s in enumerate(segments) if not s[1] and s[2] is FIN), len(segments))
        after = [s for s in segments[:fin] if not s[1] and s[2] is not FIN and s[0] >= sent[2][0]]
        while len(after) > 1 and after[-1][2] <= CLOSING_ALERT:
            after.pop()
        if after:
            request.append((after[-1][0] - sent[2][0]) * 1e6)
        client.append((sent[2][0] - sent[1][0]) * 1e6)

    def quantiles(values: list) -> str:
        if not values:
            return "n=0"
        v = sorted(values)
        at = lambda q: v[min(len(v) - 1, int(len(v) * q))]  # noqa: E731
        return f"n={len(v)} p50={at(0.5):.0f} p90={at(0.9):.0f} p99={at(0.99):.0f} us"

    print("server: ClientHello -> first flight ", quantiles(hello))
    print("server: request -> response's end   ", quantiles(request))
    print("client: its Finished -> its request ", quantiles(client))
    print("first flight sizes (bytes: connections)", flights.most_common(4))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
