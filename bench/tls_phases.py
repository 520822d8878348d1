#!/usr/bin/env python3
"""Per-connection phases of a TLS load from a packet capture, as seen on the server's side.

Capture a second or two of a bench/tls.sh row on loopback, for one proxy, then read it:

    tcpdump -i lo -nn -s 96 -w /tmp/alb.pcap 'host 127.0.108.4 and port 8443' & sleep 1.5; kill $!
    bench/tls_phases.py /tmp/alb.pcap 127.0.108.4.8443

For each connection that starts in the capture: from the ClientHello to the server's first
flight (the handshake's wait and work), from the client's request to the server's response
(the request's wait and work), and from the client's Finished to its request (the client's own
delay). Also the sizes of the first flights: a full handshake's carries the certificate, a
resumed one's does not. It assumes the client writes ClientHello, Finished and request as
separate segments, as wrk and bench/tlsload do. Needs tcpdump (Debian's tcpdump package).
"""
import collections
import subprocess
import sys


def main(pcap: str, server: str) -> None:
    out = subprocess.run(["tcpdump", "-nn", "-tt", "-r", pcap], capture_output=True, text=True, check=True).stdout
    conns = collections.defaultdict(list)
    for line in out.splitlines():
        fields = line.split()
        if len(fields) < 5 or "length" not in line:
            continue
        length = int(line.rsplit("length", 1)[1].split()[0].strip(":"))
        if length == 0:
            continue
        t, src, dst = float(fields[0]), fields[2], fields[4].rstrip(":")
        to_server = dst == server
        port = (src if to_server else dst).rsplit(".", 1)[1]
        conns[port].append((t, to_server, length))
    hello, request, client, flights = [], [], [], collections.Counter()
    for segments in conns.values():
        if not segments or not segments[0][1]:
            continue  # began before the capture
        sent = [s for s in segments if s[1]]
        answered = [s for s in segments if not s[1]]
        if len(sent) < 3 or not answered:
            continue
        first = next((s for s in answered if s[0] >= sent[0][0]), None)
        if first is None:
            continue
        hello.append((first[0] - sent[0][0]) * 1e6)
        flights[first[2]] += 1
        response = next((s for s in answered if s[0] >= sent[2][0]), None)
        if response is not None:
            request.append((response[0] - sent[2][0]) * 1e6)
        client.append((sent[2][0] - sent[1][0]) * 1e6)

    def quantiles(values: list) -> str:
        if not values:
            return "n=0"
        v = sorted(values)
        at = lambda q: v[min(len(v) - 1, int(len(v) * q))]  # noqa: E731
        return f"n={len(v)} p50={at(0.5):.0f} p90={at(0.9):.0f} p99={at(0.99):.0f} us"

    print("server: ClientHello -> first flight ", quantiles(hello))
    print("server: request -> response         ", quantiles(request))
    print("client: its Finished -> its request ", quantiles(client))
    print("first flight sizes (bytes: connections)", flights.most_common(4))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
