//! Gateway API through a running zone-alb in standalone mode: the Core tests of the
//! conformance suite (GATEWAY-HTTP profile, kubernetes-sigs/gateway-api `conformance/tests`),
//! translated. Their manifests are used as written but for the listener ports, remapped so each
//! base Gateway has its own port on the one ALB IP (80 → 8080 for `same-namespace`, 8082
//! `all-namespaces`, 8083 `backend-namespaces`, 443 → 8443); each test gets its own ALB
//! address (127.0.110.N) and echo pods (127.0.112.N) so tests run in parallel. Requests are
//! made with real curl and checked as the suite checks them: status, the pod (and namespace)
//! that answered, and the request as the backend saw it.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::gateway_echo::{self, Pod, Pods};
use crate::harness::{Proc, poll, run, tempdir, write, zone_alb};

pub const INFRA: &str = "gateway-conformance-infra";
pub const APP: &str = "gateway-conformance-app-backend";
pub const WEB: &str = "gateway-conformance-web-backend";

/// One test's ALB and backends.
pub struct Site {
    pub ip: String,
    pub dir: tempfile::TempDir,
    pub alb: Proc,
    pub pods: Pods,
    /// The certificate every HTTPS listener of the base Gateways shows (PEM), to trust.
    pub ca: std::path::PathBuf,
}

/// (Service namespace, Service, pod names): every pod gets its own port on 127.0.112.N.
const BACKENDS: &[(&str, &str, &[&str])] = &[
    (INFRA, "infra-backend-v1", &["infra-backend-v1-a", "infra-backend-v1-b"]),
    (INFRA, "infra-backend-v2", &["infra-backend-v2-a"]),
    (INFRA, "infra-backend-v3", &["infra-backend-v3-a"]),
    (APP, "app-backend-v1", &["app-backend-v1-a"]),
    (APP, "app-backend-v2", &["app-backend-v2-a"]),
    (WEB, "web-backend", &["web-backend-a"]),
];

fn base(ip: &str, cert: &(String, String), tls_port: Option<u16>) -> String {
    let tls_port = tls_port.map_or(String::new(), |p| format!(", tlsPort: {p}"));
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    format!(
        "apiVersion: mzlb.io/v1alpha1
kind: MultiZoneCluster
metadata: {{name: c}}
spec: {{subdomain: c.test}}
---
apiVersion: mzlb.io/v1alpha1
kind: ZoneALB
metadata: {{name: a}}
spec: {{zone: z, ip: {ip}, port: 8000{tls_port}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {INFRA}, labels: {{gateway-conformance: infra}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {APP}, labels: {{gateway-conformance: backend}}}}
---
apiVersion: v1
kind: Namespace
metadata: {{name: {WEB}, labels: {{gateway-conformance: backend}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: mzlb}}
spec: {{controllerName: mzlb.io/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: same-namespace, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners: [{{name: http, port: 8080, protocol: HTTP, allowedRoutes: {{namespaces: {{from: Same}}}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: all-namespaces, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners: [{{name: http, port: 8082, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: backend-namespaces, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners:
  - name: http
    port: 8083
    protocol: HTTP
    allowedRoutes:
      namespaces:
        from: Selector
        selector: {{matchLabels: {{gateway-conformance: backend}}}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: same-namespace-with-https-listener, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners:
  - name: https
    port: 8443
    protocol: HTTPS
    allowedRoutes: {{namespaces: {{from: Same}}}}
    tls: {{certificateRefs: [{{group: '', kind: Secret, name: tls-validity-checks-certificate, namespace: {INFRA}}}]}}
  - name: https-with-hostname
    port: 8443
    protocol: HTTPS
    hostname: second-example.org
    allowedRoutes: {{namespaces: {{from: Same}}}}
    tls: {{certificateRefs: [{{group: '', kind: Secret, name: tls-validity-checks-certificate, namespace: {INFRA}}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: tls-validity-checks-certificate, namespace: {INFRA}}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}",
        indent(&cert.0),
        indent(&cert.1)
    )
}

fn services(n: u8) -> (String, Vec<Pod>) {
    let mut yaml = String::new();
    let mut pods = Vec::new();
    let mut port = 3000;
    for (ns, svc, names) in BACKENDS {
        yaml.push_str(&format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {svc}, namespace: {ns}}}\n\
             spec: {{selector: {{app: {svc}}}, ports: [{{name: first-port, port: 8080, targetPort: 3000}}]}}\n"
        ));
        for (i, name) in names.iter().enumerate() {
            port += 1;
            let addr = format!("127.0.112.{n}:{port}");
            yaml.push_str(&format!(
                "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
                 metadata: {{name: {svc}-{i}, namespace: {ns}, labels: {{kubernetes.io/service-name: {svc}}}}}\n\
                 addressType: IPv4\nports: [{{name: first-port, port: {port}}}]\nendpoints: [{{addresses: [127.0.112.{n}]}}]\n"
            ));
            pods.push(Pod {
                addr: addr.parse().unwrap(),
                namespace: ns.to_string(),
                name: name.to_string(),
                tls: None,
            });
        }
    }
    (yaml, pods)
}

/// A self-signed certificate for the HTTPS tests' names.
fn certificate() -> (String, String) {
    let names = ["example.org", "second-example.org", "unknown-example.org"]
        .map(String::from)
        .to_vec();
    let mut params = rcgen::CertificateParams::new(names).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, "example.org");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// Starts site `n` with the base manifests and `extra` (the test's own objects).
pub fn site(n: u8, extra: &str) -> Site {
    site_with(n, extra, Vec::new())
}

/// [`site`], with `more` pods beside the base ones.
pub fn site_with(n: u8, extra: &str, more: Vec<Pod>) -> Site {
    site_full(n, extra, more, None)
}

/// [`site_with`], the ALB also serving Ingress TLS on `tls_port`.
pub fn site_full(n: u8, extra: &str, more: Vec<Pod>, tls_port: Option<u16>) -> Site {
    let ip = format!("127.0.110.{n}");
    let dir = tempdir();
    let cert = certificate();
    let ca = write(dir.path(), "ca.pem", &cert.0);
    let manifests = dir.path().join("m");
    let (services, mut pods) = services(n);
    pods.extend(more);
    write(
        &manifests,
        "base.yaml",
        &format!("{}{services}", base(&ip, &cert, tls_port)),
    );
    write(&manifests, "test.yaml", extra);
    let pods = gateway_echo::start(&pods);
    let alb = zone_alb(&manifests, &["--workers", "1"], &format!("http://{ip}:8000/"));
    // Gateway ports open once the table is in: wait for the first one to answer at all.
    poll(Duration::from_secs(10), || {
        (http(&[&format!("http://{ip}:8080/")]).status != 0).then_some(())
    })
    .unwrap_or_else(|| panic!("Gateway port 8080 not open:\n{}", alb.output()));
    Site { ip, dir, alb, pods, ca }
}

impl Site {
    pub fn manifests(&self) -> std::path::PathBuf {
        self.dir.path().join("m")
    }

    /// `GET http://<ip>:<port><path>` with `Host: host` and `headers`.
    pub fn get(&self, port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        self.request("GET", port, host, path, headers)
    }

    pub fn request(&self, method: &str, port: u16, host: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
        let url = format!("http://{}:{port}{path}", self.ip);
        let host = format!("Host: {host}");
        let mut args: Vec<String> = vec!["-X".into(), method.into(), "-H".into(), host, url];
        for (name, value) in headers {
            args.push("-H".into());
            args.push(if value.is_empty() {
                format!("{name};")
            } else {
                format!("{name}: {value}")
            });
        }
        if method == "HEAD" {
            args.push("-I".into());
        }
        http(&args.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// `GET https://<host>:<port><path>` with SNI and Host `host`, trusting the base certificate.
    pub fn get_tls(&self, port: u16, sni: &str, host: &str, path: &str) -> Resp {
        let resolve = format!("{sni}:{port}:{}", self.ip);
        let url = format!("https://{sni}:{port}{path}");
        let host = format!("Host: {host}");
        let ca = self.ca.to_string_lossy().into_owned();
        http(&["--resolve", &resolve, "--cacert", &ca, "-H", &host, &url])
    }

    #[allow(clippy::too_many_arguments)] // the suite's request and expectation, as one row
    /// Expects `status`, and for 200 the pod (name prefix) and namespace of the suite's check;
    /// returns the echo page.
    #[track_caller]
    pub fn expect(
        &self,
        port: u16,
        host: &str,
        path: &str,
        headers: &[(&str, &str)],
        status: u16,
        pod: &str,
        ns: &str,
    ) -> Value {
        let resp = self.get(port, host, path, headers);
        resp.expect(status, pod, ns, &format!("GET {host}:{port}{path} {headers:?}"))
    }
}

/// A response as curl saw it.
#[derive(Debug)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    #[track_caller]
    pub fn expect(&self, status: u16, pod: &str, ns: &str, what: &str) -> Value {
        assert_eq!(self.status, status, "{what}: {self:?}");
        if status != 200 {
            return Value::Null;
        }
        assert_eq!(self.header("content-type"), Some("application/json"), "{what}");
        let page = self.json();
        let served = page["pod"].as_str().unwrap_or_default();
        assert!(served.starts_with(pod), "{what}: served by {served}, wanted {pod}");
        assert_eq!(page["namespace"], ns, "{what}");
        page
    }
}

/// The request headers an echo page shows, as the suite reads them: values joined with `,`.
pub fn seen_header(page: &Value, name: &str) -> Option<String> {
    let headers = page["headers"].as_object()?;
    let values = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))?
        .1
        .as_array()?;
    Some(values.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
}

/// Runs `curl -s -i` (redirects not followed).
pub fn http(args: &[&str]) -> Resp {
    let out = run(Command::new("curl").args(["-s", "-i", "--max-time", "5"]).args(args));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    Resp {
        status,
        headers,
        body: body.to_owned(),
    }
}

/// An HTTPRoute in the infra namespace with `spec` (YAML flow or block, indented by two).
pub fn route(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec:\n{spec}"
    )
}

/// `zone-alb --check` on the site's manifests: its findings.
pub fn check(dir: &Path) -> String {
    let out = run(Command::new(crate::harness::bin("zone-alb"))
        .args(["--check", "--manifests"])
        .arg(dir));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn simple_same_namespace() {
    let s = site(
        1,
        &route(
            "gateway-conformance-infra-test",
            "  parentRefs: [{name: same-namespace}]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]\n",
        ),
    );
    let page = s.expect(8080, &s.ip, "/", &[], 200, "infra-backend-v1", INFRA);
    assert_eq!(page["path"], "/");
    assert_eq!(page["host"], s.ip.as_str());
}

#[test]
fn cross_namespace_route_and_backend() {
    // HTTPRouteCrossNamespace: a route in a namespace the listener's selector allows.
    let s = site(
        2,
        &format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: cross-namespace, namespace: {WEB}}}\n\
             spec:\n  parentRefs: [{{name: backend-namespaces, namespace: {INFRA}}}]\n  rules: [{{backendRefs: [{{name: web-backend, port: 8080}}]}}]\n\
             ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: invalid-cross-namespace-parent-ref, namespace: {WEB}}}\n\
             spec:\n  parentRefs: [{{name: same-namespace, namespace: {INFRA}}}]\n  rules: [{{backendRefs: [{{name: web-backend, port: 8080}}]}}]\n"
        ),
    );
    s.expect(8083, "example.test", "/", &[], 200, "web-backend", WEB);
    // HTTPRouteInvalidCrossNamespaceParentRef: the Same-namespace listener does not take it.
    s.expect(8080, "example.test", "/", &[], 404, "", "");
    let findings = check(&s.manifests());
    assert!(
        findings.contains("HTTPRoute gateway-conformance-web-backend/invalid-cross-namespace-parent-ref on Gateway gateway-conformance-infra/same-namespace: Accepted"),
        "{findings}"
    );
    assert!(findings.contains("NotAllowedByListeners"), "{findings}");
}

#[test]
fn exact_path_matching_and_path_match_order() {
    let s = site(
        3,
        &format!(
            "{}{}",
            route(
                "exact-matching",
                "  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: Exact, value: /one}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /two}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
"
            ),
            route(
                "path-matching-order",
                "  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{path: {type: Exact, value: /match}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /match/exact}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{path: {type: Exact, value: /match/exact/one}}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/}}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/prefix/}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /match/prefix/one}}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
"
            )
        ),
    );
    for (path, status, pod) in [
        ("/one", 200, "infra-backend-v1"),
        ("/two", 200, "infra-backend-v2"),
        ("/", 404, ""),
        ("/one/example", 404, ""),
        ("/two/", 404, ""),
        ("/Two", 404, ""),
        ("/match/exact/one", 200, "infra-backend-v3"),
        ("/match/exact", 200, "infra-backend-v2"),
        ("/match", 200, "infra-backend-v1"),
        ("/match/prefix/one/any", 200, "infra-backend-v2"),
        ("/match/prefix/any", 200, "infra-backend-v1"),
        ("/match/any", 200, "infra-backend-v3"),
        // Spelling tricks resolve before matching, as for Ingress rules.
        ("/match/x/../exact", 200, "infra-backend-v2"),
        ("/%6Fne", 200, "infra-backend-v1"),
    ] {
        s.expect(8080, &s.ip, path, &[], status, pod, INFRA);
    }
    // The backend gets the path the rule was chosen by, not a spelling it may read otherwise.
    let page = s.expect(
        8080,
        &s.ip,
        "/match/x/../exact?q=1",
        &[],
        200,
        "infra-backend-v2",
        INFRA,
    );
    assert_eq!(page["path"], "/match/exact?q=1");
    let page = s.expect(8080, &s.ip, "/match//exact/../any", &[], 200, "infra-backend-v3", INFRA);
    assert_eq!(page["path"], "/match/any");
}

#[test]
fn matching_with_headers_and_across_routes() {
    let s = site(
        4,
        &format!(
            "{}{}{}",
            route(
                "matching-part1",
                "  parentRefs: [{name: same-namespace}]
  hostnames: [example.com, example.net]
  rules:
  - matches: [{path: {type: PathPrefix, value: /}}, {headers: [{name: version, value: one}]}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
"
            ),
            route(
                "matching-part2",
                "  parentRefs: [{name: same-namespace}]
  hostnames: [example.com]
  rules:
  - matches: [{path: {type: PathPrefix, value: /v2}}, {headers: [{name: version, value: two}]}]
    backendRefs: [{name: infra-backend-v2, port: 8080}]
"
            ),
            route(
                "header-matching",
                "  parentRefs: [{name: same-namespace}]
  rules:
  - {matches: [{headers: [{name: version, value: one}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: version, value: two}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{headers: [{name: version, value: two}, {name: color, value: orange}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: color, value: blue}]}, {headers: [{name: color, value: green}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: color, value: red}]}, {headers: [{name: color, value: yellow}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
"
            )
        ),
    );
    let v1 = "infra-backend-v1";
    let v2 = "infra-backend-v2";
    for (host, path, headers, pod) in [
        ("example.com", "/", &[][..], v1),
        ("example.com", "/example", &[], v1),
        ("example.net", "/example", &[], v1),
        ("example.com", "/example", &[("Version", "one")], v1),
        ("example.com", "/v2", &[], v2),
        ("example.net", "/v2", &[], v1),
        ("example.com", "/v2/example", &[], v2),
        ("example.com", "/", &[("Version", "two")], v2),
        ("Example.COM:8080", "/v2", &[], v2),
    ] {
        s.expect(8080, host, path, headers, 200, pod, INFRA);
    }
    for (headers, status, pod) in [
        (&[("Version", "one")][..], 200, v1),
        (&[("Version", "two")], 200, v2),
        (&[("Version", "two"), ("Color", "orange")], 200, v1),
        (&[("Version", "two"), ("Color", "blue")], 200, v2),
        (&[("Color", "orange")], 404, ""),
        (&[("Some-Other-Header", "one")], 404, ""),
        (&[("Color", "blue")], 200, v1),
        (&[("Color", "green")], 200, v1),
        (&[("Color", "red")], 200, v2),
        (&[("Color", "yellow")], 200, v2),
        (&[("Color", "purple")], 404, ""),
    ] {
        s.expect(8080, &s.ip, "/", headers, status, pod, INFRA);
    }
}

#[test]
fn hostname_intersection_and_listener_hostnames() {
    let gateways = format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: httproute-hostname-intersection, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners:
  - {{name: listener-1, port: 8084, protocol: HTTP, hostname: very.specific.com}}
  - {{name: listener-2, port: 8084, protocol: HTTP, hostname: '*.wildcard.io'}}
  - {{name: listener-3, port: 8084, protocol: HTTP, hostname: '*.anotherwildcard.io'}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: httproute-hostname-intersection-all, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners: [{{name: listener-1, port: 8085, protocol: HTTP}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: httproute-listener-hostname-matching, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners:
  - {{name: listener-1, port: 8086, protocol: HTTP, hostname: bar.com}}
  - {{name: listener-2, port: 8086, protocol: HTTP, hostname: foo.bar.com}}
  - {{name: listener-3, port: 8086, protocol: HTTP, hostname: '*.bar.com'}}
  - {{name: listener-4, port: 8086, protocol: HTTP, hostname: '*.foo.com'}}
"
    );
    let hi = |name: &str, hosts: &str, prefix: &str, backend: &str| {
        route(
            name,
            &format!(
                "  parentRefs: [{{name: httproute-hostname-intersection, namespace: {INFRA}}}]\n  hostnames: {hosts}\n  \
                 rules: [{{matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}], backendRefs: [{{name: {backend}, port: 8080}}]}}]\n"
            ),
        )
    };
    let lh = |name: &str, sections: &[&str], backend: &str| {
        let parents: Vec<String> = sections
            .iter()
            .map(|s| format!("{{name: httproute-listener-hostname-matching, namespace: {INFRA}, sectionName: {s}}}"))
            .collect();
        route(
            name,
            &format!(
                "  parentRefs: [{}]\n  rules: [{{backendRefs: [{{name: {backend}, port: 8080}}]}}]\n",
                parents.join(", ")
            ),
        )
    };
    let routes = [
        hi(
            "specific-host-matches-listener-specific-host",
            "[non.matching.com, '*.nonmatchingwildcard.io', very.specific.com]",
            "/s1",
            "infra-backend-v1",
        ),
        hi(
            "specific-host-matches-listener-wildcard-host",
            "[non.matching.com, wildcard.io, foo.wildcard.io, bar.wildcard.io, foo.bar.wildcard.io]",
            "/s2",
            "infra-backend-v2",
        ),
        hi(
            "wildcard-host-matches-listener-specific-host",
            "[non.matching.com, '*.specific.com']",
            "/s3",
            "infra-backend-v3",
        ),
        hi(
            "wildcard-host-matches-listener-wildcard-host",
            "['*.anotherwildcard.io']",
            "/s4",
            "infra-backend-v1",
        ),
        hi(
            "no-intersecting-hosts",
            "[specific.but.wrong.com, wildcard.io]",
            "/s5",
            "infra-backend-v2",
        ),
        route(
            "httproute-hostname-intersection-all",
            &format!(
                "  parentRefs: [{{name: httproute-hostname-intersection-all, namespace: {INFRA}}}]\n  \
                 hostnames: [first.com, sub.first.com, second.com, sub.second.com]\n  rules: [{{backendRefs: [{{name: infra-backend-v2, port: 8080}}]}}]\n"
            ),
        ),
        lh("backend-v1", &["listener-1"], "infra-backend-v1"),
        lh("backend-v2", &["listener-2"], "infra-backend-v2"),
        lh("backend-v3", &["listener-3", "listener-4"], "infra-backend-v3"),
    ];
    let s = site(5, &format!("{gateways}{}", routes.concat()));
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    for (host, path, status, pod) in [
        ("very.specific.com", "/s1", 200, v1),
        ("very.specific.com:1234", "/s1", 200, v1),
        ("non.matching.com", "/s1", 404, ""),
        ("foo.nonmatchingwildcard.io", "/s1", 404, ""),
        ("foo.wildcard.io", "/s1", 404, ""),
        ("very.specific.com", "/non-matching-prefix", 404, ""),
        ("foo.wildcard.io", "/s2", 200, v2),
        ("bar.wildcard.io", "/s2", 200, v2),
        ("foo.bar.wildcard.io", "/s2", 200, v2),
        ("non.matching.com", "/s2", 404, ""),
        ("wildcard.io", "/s2", 404, ""),
        ("very.specific.com", "/s2", 404, ""),
        ("foo.wildcard.io", "/non-matching-prefix", 404, ""),
        ("very.specific.com", "/s3", 200, v3),
        ("non.matching.com", "/s3", 404, ""),
        ("foo.specific.com", "/s3", 404, ""),
        ("foo.wildcard.io", "/s3", 404, ""),
        ("foo.anotherwildcard.io", "/s4", 200, v1),
        ("bar.anotherwildcard.io", "/s4", 200, v1),
        ("foo.bar.anotherwildcard.io", "/s4", 200, v1),
        ("anotherwildcard.io", "/s4", 404, ""),
        ("foo.wildcard.io", "/s4", 404, ""),
        ("very.specific.com", "/s4", 404, ""),
        ("foo.anotherwildcard.io", "/non-matching-prefix", 404, ""),
        ("specific.but.wrong.com", "/s5", 404, ""),
        ("wildcard.io", "/s5", 404, ""),
    ] {
        s.expect(8084, host, path, &[], status, pod, INFRA);
    }
    for (host, status) in [
        ("first.com", 200),
        ("sub.first.com", 200),
        ("second.com", 200),
        ("sub.second.com", 200),
        ("third.com", 404),
        ("sub.third.com", 404),
    ] {
        s.expect(8085, host, "/", &[], status, v2, INFRA);
    }
    for (host, status, pod) in [
        ("bar.com", 200, v1),
        ("foo.bar.com", 200, v2),
        ("baz.bar.com", 200, v3),
        ("boo.bar.com", 200, v3),
        ("multiple.prefixes.bar.com", 200, v3),
        ("multiple.prefixes.foo.com", 200, v3),
        ("foo.com", 404, ""),
        ("no.matching.host", 404, ""),
    ] {
        s.expect(8086, host, "/", &[], status, pod, INFRA);
    }
    let findings = check(&s.manifests());
    assert!(
        findings.contains("HTTPRoute gateway-conformance-infra/no-intersecting-hosts on Gateway gateway-conformance-infra/httproute-hostname-intersection: Accepted"),
        "{findings}"
    );
    assert!(findings.contains("NoMatchingListenerHostname"), "{findings}");
}

#[test]
fn request_header_modifier() {
    let rule = |path: &str, modifier: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    filters: [{{type: RequestHeaderModifier, requestHeaderModifier: {modifier}}}]\n    backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n"
        )
    };
    let rules = [
        rule("/set", "{set: [{name: X-Header-Set, value: set-overwrites-values}]}"),
        rule("/add", "{add: [{name: X-Header-Add, value: add-appends-values}]}"),
        rule("/remove", "{remove: [X-Header-Remove]}"),
        rule(
            "/multiple",
            "{set: [{name: X-Header-Set-1, value: header-set-1}, {name: X-Header-Set-2, value: header-set-2}], \
             add: [{name: X-Header-Add-1, value: header-add-1}, {name: X-Header-Add-2, value: header-add-2}, {name: X-Header-Add-3, value: header-add-3}], \
             remove: [X-Header-Remove-1, X-Header-Remove-2]}",
        ),
        rule(
            "/case-insensitivity",
            "{set: [{name: X-Header-Set, value: header-set}], add: [{name: X-Header-Add, value: header-add}], remove: [X-Header-Remove]}",
        ),
    ];
    let s = site(
        6,
        &route(
            "request-header-modifier",
            &format!("  parentRefs: [{{name: same-namespace}}]\n  rules:\n{}", rules.concat()),
        ),
    );
    let v1 = "infra-backend-v1";
    let at = |path: &str, headers: &[(&str, &str)]| s.expect(8080, &s.ip, path, headers, 200, v1, INFRA);
    let page = at("/set", &[("Some-Other-Header", "val")]);
    assert_eq!(seen_header(&page, "Some-Other-Header").as_deref(), Some("val"));
    assert_eq!(
        seen_header(&page, "X-Header-Set").as_deref(),
        Some("set-overwrites-values")
    );
    let page = at(
        "/set",
        &[("Some-Other-Header", "val"), ("X-Header-Set", "some-other-value")],
    );
    assert_eq!(
        seen_header(&page, "X-Header-Set").as_deref(),
        Some("set-overwrites-values")
    );
    let page = at("/add", &[("X-Header-Add", "some-other-value")]);
    assert_eq!(
        seen_header(&page, "X-Header-Add").as_deref(),
        Some("some-other-value,add-appends-values")
    );
    let page = at("/remove", &[("X-Header-Remove", "val")]);
    assert_eq!(seen_header(&page, "X-Header-Remove"), None);
    let page = at(
        "/multiple",
        &[
            ("X-Header-Set-2", "set-val-2"),
            ("X-Header-Add-2", "add-val-2"),
            ("X-Header-Remove-2", "remove-val-2"),
            ("Another-Header", "another-header-val"),
        ],
    );
    for (name, want) in [
        ("X-Header-Set-1", Some("header-set-1")),
        ("X-Header-Set-2", Some("header-set-2")),
        ("X-Header-Add-1", Some("header-add-1")),
        ("X-Header-Add-2", Some("add-val-2,header-add-2")),
        ("X-Header-Add-3", Some("header-add-3")),
        ("Another-Header", Some("another-header-val")),
        ("X-Header-Remove-1", None),
        ("X-Header-Remove-2", None),
    ] {
        assert_eq!(seen_header(&page, name).as_deref(), want, "{name}");
    }
    let page = at(
        "/case-insensitivity",
        &[
            ("x-header-set", "original-val-set"),
            ("x-header-add", "original-val-add"),
            ("x-header-remove", "original-val-remove"),
        ],
    );
    assert_eq!(seen_header(&page, "X-Header-Set").as_deref(), Some("header-set"));
    assert_eq!(
        seen_header(&page, "X-Header-Add").as_deref(),
        Some("original-val-add,header-add")
    );
    assert_eq!(seen_header(&page, "X-Header-Remove"), None);
}

#[test]
fn redirect_host_and_status() {
    let s = site(
        7,
        &route(
            "redirect-host-and-status",
            "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /hostname-redirect}}]
    filters: [{type: RequestRedirect, requestRedirect: {hostname: example.org}}]
  - matches: [{path: {type: PathPrefix, value: /host-and-status}}]
    filters: [{type: RequestRedirect, requestRedirect: {statusCode: 301, hostname: example.org}}]
",
        ),
    );
    let r = s.get(8080, &s.ip, "/hostname-redirect", &[]);
    assert_eq!(r.status, 302, "{r:?}");
    // The listener's port (8080 standing for the suite's 80) is kept, as the specification says.
    assert_eq!(r.header("location"), Some("http://example.org:8080/hostname-redirect"));
    let r = s.get(8080, &s.ip, "/host-and-status?x=1", &[]);
    assert_eq!(r.status, 301, "{r:?}");
    assert_eq!(
        r.header("location"),
        Some("http://example.org:8080/host-and-status?x=1")
    );
}

#[test]
fn weighted_backends() {
    let s = site(
        8,
        &format!(
            "{}{}",
            route(
                "weighted-backends",
                "  parentRefs: [{name: same-namespace}]
  rules:
  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 70}
    - {name: infra-backend-v2, port: 8080, weight: 30}
    - {name: infra-backend-v3, port: 8080, weight: 0}
",
            ),
            route(
                "all-backends-weight-zero",
                "  parentRefs: [{name: same-namespace}]
  hostnames: [zero.example]
  rules:
  - backendRefs:
    - {name: infra-backend-v1, port: 8080, weight: 0}
    - {name: infra-backend-v2, port: 8080, weight: 0}
",
            )
        ),
    );
    s.expect(8080, "zero.example", "/", &[], 500, "", "");
    // 500 requests, as the suite sends them: each on a new connection, 10 at a time.
    let addr: std::net::SocketAddr = format!("{}:8080", s.ip).parse().unwrap();
    let pods: Vec<String> = std::thread::scope(|scope| {
        let workers: Vec<_> = (0..10)
            .map(|_| {
                scope.spawn(move || {
                    (0..50)
                        .map(|_| pod_of(&raw_get(addr, "weights.example", "/")))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    let mut counts = std::collections::BTreeMap::<String, u32>::new();
    for pod in pods {
        let service = pod.rsplit_once('-').map_or(pod.clone(), |(s, _)| s.to_owned());
        *counts.entry(service).or_default() += 1;
    }
    let total: u32 = counts.values().sum();
    assert_eq!(total, 500, "{counts:?}");
    let share = |s: &str| f64::from(counts.get(s).copied().unwrap_or(0)) / 500.0;
    assert!((share("infra-backend-v1") - 0.7).abs() <= 0.05, "{counts:?}");
    assert!((share("infra-backend-v2") - 0.3).abs() <= 0.05, "{counts:?}");
    assert_eq!(
        counts.get("infra-backend-v3"),
        None,
        "weight 0 gets nothing: {counts:?}"
    );
}

#[test]
fn reference_grants_and_invalid_backends() {
    let grant = format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {{name: reference-grant, namespace: {WEB}}}\n\
         spec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {INFRA}}}]\n  to: [{{group: '', kind: Service, name: web-backend}}]\n\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {{name: invalid-reference-grant, namespace: {APP}}}\n\
         spec:\n  from: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, namespace: {INFRA}}}]\n  to: [{{group: '', kind: Service, name: app-backend-v1}}]\n"
    );
    let routes = [
        route(
            "reference-grant",
            &format!(
                "  parentRefs: [{{name: same-namespace}}]\n  hostnames: [granted.example]\n  rules: [{{backendRefs: [{{name: web-backend, namespace: {WEB}, port: 8080}}]}}]\n"
            ),
        ),
        route(
            "invalid-reference-grant",
            &format!(
                "  parentRefs: [{{name: same-namespace}}]\n  hostnames: [partly.example]\n  rules:\n  \
                 - {{matches: [{{path: {{type: PathPrefix, value: /v2}}}}], backendRefs: [{{name: app-backend-v2, namespace: {APP}, port: 8080}}]}}\n  \
                 - {{backendRefs: [{{name: app-backend-v1, namespace: {APP}, port: 8080}}]}}\n"
            ),
        ),
        route(
            "invalid-backend-ref-unknown-kind",
            "  parentRefs: [{name: same-namespace}]\n  hostnames: [kind.example]\n  rules: [{backendRefs: [{group: unknownkind.example.com, kind: NonExistent, name: infra-backend-v1, port: 8080}]}]\n",
        ),
        route(
            "invalid-nonexistent-backend-ref",
            "  parentRefs: [{name: same-namespace}]\n  hostnames: [missing.example]\n  rules: [{backendRefs: [{name: nonexistent, port: 8080}]}]\n",
        ),
    ];
    let s = site(9, &routes.concat());
    write(&s.manifests(), "grants.yaml", &grant);
    // The grant arrives with a reload (file-system events): the route resolves.
    poll(Duration::from_secs(5), || {
        (s.get(8080, "granted.example", "/", &[]).status == 200).then_some(())
    })
    .expect("the ReferenceGrant lets the route reach web-backend");
    s.expect(8080, "granted.example", "/", &[], 200, "web-backend", WEB);
    s.expect(8080, "partly.example", "/v2", &[], 500, "", "");
    s.expect(8080, "partly.example", "/", &[], 200, "app-backend-v1", APP);
    s.expect(8080, "kind.example", "/v2", &[], 500, "", "");
    s.expect(8080, "missing.example", "/", &[], 500, "", "");
    let findings = check(&s.manifests());
    for reason in ["RefNotPermitted", "InvalidKind", "BackendNotFound"] {
        assert!(findings.contains(reason), "{reason}: {findings}");
    }
    // HTTPRouteReferenceGrant: the grant deleted, the route's requests get 500.
    std::fs::remove_file(s.manifests().join("grants.yaml")).unwrap();
    poll(Duration::from_secs(5), || {
        (s.get(8080, "granted.example", "/", &[]).status == 500).then_some(())
    })
    .expect("without the ReferenceGrant the backend is refused");
}

#[test]
fn https_listener_by_sni_and_host() {
    let s = site(
        10,
        &format!(
            "{}{}",
            route(
                "httproute-https-test",
                "  parentRefs: [{name: same-namespace-with-https-listener}]\n  hostnames: [example.org]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]\n",
            ),
            route(
                "httproute-https-test-no-hostname",
                "  parentRefs: [{name: same-namespace-with-https-listener, sectionName: https-with-hostname}]\n  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]\n",
            )
        ),
    );
    let what = "https";
    let page = s
        .get_tls(8443, "example.org", "example.org", "/")
        .expect(200, "infra-backend-v1", INFRA, what);
    assert_eq!(seen_header(&page, "X-Forwarded-Proto").as_deref(), Some("https"));
    s.get_tls(8443, "unknown-example.org", "unknown-example.org", "/")
        .expect(404, "", "", what);
    s.get_tls(8443, "second-example.org", "second-example.org", "/")
        .expect(200, "infra-backend-v2", INFRA, what);
    // A Host of another listener than the one SNI chose: misdirected (GatewayHTTPSListenerDetectMisdirectedRequests).
    s.get_tls(8443, "example.org", "second-example.org", "/")
        .expect(421, "", "", what);
    s.get_tls(8443, "second-example.org", "example.org", "/")
        .expect(421, "", "", what);
}

#[test]
fn invalid_tls_listener_is_not_served_and_the_rest_is() {
    let gateway = format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gateway-certificate-nonexistent-secret, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners:
  - {{name: http, port: 8087, protocol: HTTP, allowedRoutes: {{namespaces: {{from: Same}}}}}}
  - name: https
    port: 8444
    protocol: HTTPS
    allowedRoutes: {{namespaces: {{from: All}}}}
    tls: {{certificateRefs: [{{group: '', kind: Secret, name: nonexistent-certificate}}]}}
"
    );
    let control = route(
        "gateway-certificate-nonexistent-secret-control",
        "  parentRefs: [{name: gateway-certificate-nonexistent-secret, sectionName: http}]\n  hostnames: [nonexistent-certificate.example.com]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]\n",
    );
    let s = site(11, &format!("{gateway}{control}"));
    poll(Duration::from_secs(5), || {
        (s.get(8087, "nonexistent-certificate.example.com", "/", &[]).status == 200).then_some(())
    })
    .expect("the control route is served");
    let r = s.get_tls(8444, "example.org", "example.org", "/");
    assert_eq!(r.status, 0, "no TLS on a listener without a usable certificate: {r:?}");
    let findings = check(&s.manifests());
    assert!(findings.contains("InvalidCertificateRef"), "{findings}");
}

#[test]
fn listeners_follow_gateway_changes() {
    let s = site(
        12,
        &route(
            "r",
            "  parentRefs: [{name: same-namespace}]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]\n",
        ),
    );
    s.expect(8080, "a.example", "/", &[], 200, "infra-backend-v1", INFRA);
    let extra = format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: added, namespace: {INFRA}}}\n\
         spec:\n  gatewayClassName: mzlb\n  listeners: [{{name: http, port: 8088, protocol: HTTP}}]\n---\n{}",
        route(
            "added",
            "  parentRefs: [{name: added}]\n  rules: [{backendRefs: [{name: infra-backend-v2, port: 8080}]}]\n"
        )
    );
    write(&s.manifests(), "added.yaml", &extra);
    poll(Duration::from_secs(5), || {
        (s.get(8088, "a.example", "/", &[]).status == 200).then_some(())
    })
    .expect("a Gateway's new port is opened on reload");
    s.expect(8088, "a.example", "/", &[], 200, "infra-backend-v2", INFRA);
    std::fs::remove_file(s.manifests().join("added.yaml")).unwrap();
    poll(Duration::from_secs(15), || {
        (s.get(8088, "a.example", "/", &[]).status == 0).then_some(())
    })
    .expect("a port no Gateway asks for is closed");
    s.expect(8080, "a.example", "/", &[], 200, "infra-backend-v1", INFRA);
    // A broken change keeps the last good table.
    write(
        &s.manifests(),
        "broken.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: b, namespace: x}\nspec: {rules: 7}\n",
    );
    poll(Duration::from_secs(5), || {
        s.alb.output().contains("manifest change rejected").then_some(())
    })
    .unwrap_or_else(|| panic!("the broken change is rejected:\n{}", s.alb.output()));
    assert!(
        s.alb.output().contains("spec.rules"),
        "the error names the field:\n{}",
        s.alb.output()
    );
    s.expect(8080, "a.example", "/", &[], 200, "infra-backend-v1", INFRA);
}

/// One `GET` on a new connection, by hand: the whole answer.
pub fn raw_get(addr: std::net::SocketAddr, host: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

/// The pod an echo answer names (`?` when it is not one).
fn pod_of(answer: &str) -> String {
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["pod"].as_str().map(str::to_owned))
        .unwrap_or_else(|| format!("? {answer}"))
}

// Extended features.

#[test]
fn query_param_and_method_matching() {
    let s = site(
        13,
        &format!(
            "{}{}",
            route(
                "query-param-matching",
                "  parentRefs: [{name: same-namespace}]
  hostnames: [query.example]
  rules:
  - {matches: [{queryParams: [{name: animal, value: whale}]}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{queryParams: [{name: animal, value: dolphin}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - matches: [{queryParams: [{name: animal, value: dolphin}, {name: color, value: blue}]}, {queryParams: [{name: ANIMAL, value: Whale}]}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
  - {matches: [{path: {type: PathPrefix, value: /path5}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{queryParams: [{name: animal, value: hydra}]}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{headers: [{name: version, value: four}]}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
"
            ),
            route(
                "method-matching",
                "  parentRefs: [{name: same-namespace}]
  hostnames: [method.example]
  rules:
  - {matches: [{method: POST}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{method: GET}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /path1}, method: GET}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{headers: [{name: version, value: one}], method: PUT}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{path: {type: PathPrefix, value: /path5}}], backendRefs: [{name: infra-backend-v1, port: 8080}]}
  - {matches: [{method: PATCH}], backendRefs: [{name: infra-backend-v2, port: 8080}]}
  - {matches: [{headers: [{name: version, value: four}]}], backendRefs: [{name: infra-backend-v3, port: 8080}]}
"
            )
        ),
    );
    let (v1, v2, v3) = ("infra-backend-v1", "infra-backend-v2", "infra-backend-v3");
    for (path, headers, status, pod) in [
        ("/?animal=whale", &[][..], 200, v1),
        ("/?animal=dolphin", &[], 200, v2),
        ("/?animal=dolphin&color=blue", &[], 200, v3),
        ("/?ANIMAL=Whale", &[], 200, v3),
        ("/?animal=whale&otherparam=irrelevant", &[], 200, v1),
        ("/?animal=dolphin&color=yellow", &[], 200, v2),
        ("/?color=blue", &[], 404, ""),
        ("/?animal=dog", &[], 404, ""),
        ("/?animal=whaledolphin", &[], 404, ""),
        ("/", &[], 404, ""),
        ("/path5?animal=hydra", &[], 200, v1),
        ("/?animal=hydra", &[("version", "four")], 200, v3),
    ] {
        let page = s.expect(8080, "query.example", path, headers, status, pod, INFRA);
        if status == 200 {
            assert_eq!(page["path"], path, "the query reaches the backend as sent");
        }
    }
    for (method, path, headers, status, pod) in [
        ("POST", "/", &[][..], 200, v1),
        ("GET", "/", &[], 200, v2),
        ("HEAD", "/", &[], 404, ""),
        ("GET", "/path1", &[], 200, v1),
        ("PUT", "/", &[("version", "one")], 200, v2),
        ("PUT", "/", &[], 404, ""),
        ("PATCH", "/path5", &[], 200, v1),
        ("PATCH", "/", &[("version", "four")], 200, v2),
    ] {
        let r = s.request(method, 8080, "method.example", path, headers);
        if method == "HEAD" {
            assert_eq!(r.status, status, "{method} {path}");
            continue;
        }
        let page = r.expect(status, pod, INFRA, &format!("{method} {path}"));
        if status == 200 {
            assert_eq!(page["method"], method);
        }
    }
}

#[test]
fn response_header_modifier() {
    let rule = |path: &str, modifier: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {modifier}}}]\n    backendRefs: [{{name: infra-backend-v1, port: 8080}}]\n"
        )
    };
    let rules = [
        rule("/set", "{set: [{name: X-Header-Set, value: set-overwrites-values}]}"),
        rule("/add", "{add: [{name: X-Header-Add, value: add-appends-values}]}"),
        rule("/remove", "{remove: [X-Header-Remove]}"),
    ];
    let s = site(
        14,
        &route(
            "response-header-modifier",
            &format!("  parentRefs: [{{name: same-namespace}}]\n  rules:\n{}", rules.concat()),
        ),
    );
    let echo_set = |pairs: &str| ("X-Echo-Set-Header", pairs.to_owned());
    let at = |path: &str, set: &str| {
        let (n, v) = echo_set(set);
        let r = s.get(8080, &s.ip, path, &[(n, v.as_str())]);
        r.expect(200, "infra-backend-v1", INFRA, path);
        r
    };
    let r = at("/set", "Some-Other-Header:val,X-Header-Set:some-other-value");
    assert_eq!(r.header("X-Header-Set"), Some("set-overwrites-values"));
    assert_eq!(r.header("Some-Other-Header"), Some("val"));
    let r = at("/add", "X-Header-Add:some-other-value");
    let added: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("x-header-add"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(added.join(","), "some-other-value,add-appends-values");
    let r = at("/remove", "X-Header-Remove:val");
    assert_eq!(r.header("X-Header-Remove"), None);
}

#[test]
fn redirects_of_path_port_and_scheme() {
    let redirect = |path: &str, spec: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    filters: [{{type: RequestRedirect, requestRedirect: {spec}}}]\n"
        )
    };
    let rules = [
        redirect(
            "/original-prefix",
            "{path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}",
        ),
        redirect(
            "/full",
            "{path: {type: ReplaceFullPath, replaceFullPath: /full-path-replacement}}",
        ),
        redirect(
            "/path-and-host",
            "{hostname: example.org, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}",
        ),
        redirect(
            "/path-and-status",
            "{statusCode: 301, path: {type: ReplacePrefixMatch, replacePrefixMatch: /replacement-prefix}}",
        ),
        redirect(
            "/full-path-and-host",
            "{hostname: example.org, path: {type: ReplaceFullPath, replaceFullPath: /replacement-full}}",
        ),
        redirect("/port", "{port: 8083}"),
        redirect(
            "/port-and-host-and-status",
            "{port: 8083, hostname: example.org, statusCode: 302}",
        ),
        redirect("/scheme", "{scheme: https}"),
        redirect(
            "/scheme-and-host-and-status",
            "{scheme: https, hostname: example.org, statusCode: 307}",
        ),
        redirect(
            "/scheme-https-and-port-8443",
            "{scheme: https, port: 8443, hostname: example.org, statusCode: 308}",
        ),
        redirect("/see-other", "{statusCode: 303}"),
    ];
    let s = site(
        15,
        &route(
            "redirects",
            &format!("  parentRefs: [{{name: same-namespace}}]\n  rules:\n{}", rules.concat()),
        ),
    );
    let host = "redirect.example";
    for (path, status, location) in [
        (
            "/original-prefix/lemon",
            302,
            "http://redirect.example:8080/replacement-prefix/lemon",
        ),
        (
            "/full/path/original",
            302,
            "http://redirect.example:8080/full-path-replacement",
        ),
        ("/path-and-host", 302, "http://example.org:8080/replacement-prefix"),
        (
            "/path-and-status",
            301,
            "http://redirect.example:8080/replacement-prefix",
        ),
        ("/full-path-and-host", 302, "http://example.org:8080/replacement-full"),
        ("/port", 302, "http://redirect.example:8083/port"),
        (
            "/port-and-host-and-status",
            302,
            "http://example.org:8083/port-and-host-and-status",
        ),
        ("/scheme", 302, "https://redirect.example/scheme"),
        (
            "/scheme-and-host-and-status?a=b",
            307,
            "https://example.org/scheme-and-host-and-status?a=b",
        ),
        (
            "/scheme-https-and-port-8443",
            308,
            "https://example.org:8443/scheme-https-and-port-8443",
        ),
        ("/see-other", 303, "http://redirect.example:8080/see-other"),
    ] {
        let r = s.get(8080, host, path, &[]);
        assert_eq!(r.status, status, "{path}: {r:?}");
        assert_eq!(r.header("location"), Some(location), "{path}");
    }
}

#[test]
fn url_rewrites_of_host_and_path() {
    let mods = "{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Header-Set, value: set-overwrites-values}], add: [{name: X-Header-Add, value: header-val-1}], remove: [X-Header-Remove]}}";
    let s = site(
        16,
        &format!(
            "{}{}",
            route(
                "rewrite-host",
                &format!(
                    "  parentRefs: [{{name: same-namespace}}]
  hostnames: [rewrite.example]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /one}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{hostname: one.example.org}}}}]
    backendRefs: [{{name: infra-backend-v1, port: 8080}}]
  - filters: [{{type: URLRewrite, urlRewrite: {{hostname: example.org}}}}]
    backendRefs: [{{name: infra-backend-v2, port: 8080}}]
  - matches: [{{path: {{type: PathPrefix, value: /rewrite-host-and-modify-headers}}}}]
    filters: [{{type: URLRewrite, urlRewrite: {{hostname: test.example.org}}}}, {mods}]
    backendRefs: [{{name: infra-backend-v2, port: 8080}}]
"
                )
            ),
            route(
                "rewrite-path",
                "  parentRefs: [{name: same-namespace}]
  hostnames: [path.example]
  rules:
  - matches: [{path: {type: PathPrefix, value: /prefix/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /one}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /strip-prefix}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplacePrefixMatch, replacePrefixMatch: /}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /full/one}}]
    filters: [{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: /one}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
"
            )
        ),
    );
    let (v1, v2) = ("infra-backend-v1", "infra-backend-v2");
    let page = s.expect(8080, "rewrite.example", "/one", &[], 200, v1, INFRA);
    assert_eq!(page["host"], "one.example.org");
    assert_eq!(page["path"], "/one");
    let page = s.expect(8080, "rewrite.example", "/two", &[], 200, v2, INFRA);
    assert_eq!(page["host"], "example.org");
    let page = s.expect(
        8080,
        "rewrite.example",
        "/rewrite-host-and-modify-headers",
        &[("X-Header-Remove", "remove-val"), ("X-Header-Add", "append-val-1")],
        200,
        v2,
        INFRA,
    );
    assert_eq!(page["host"], "test.example.org");
    assert_eq!(
        seen_header(&page, "X-Header-Add").as_deref(),
        Some("append-val-1,header-val-1")
    );
    assert_eq!(
        seen_header(&page, "X-Header-Set").as_deref(),
        Some("set-overwrites-values")
    );
    assert_eq!(seen_header(&page, "X-Header-Remove"), None);
    for (path, seen) in [
        ("/prefix/one/two", "/one/two"),
        ("/strip-prefix/three", "/three"),
        ("/strip-prefix", "/"),
        ("/strip-prefix/?q=1", "/?q=1"),
        ("/full/one/two", "/one"),
        ("/full/one/two?x=y", "/one?x=y"),
    ] {
        let page = s.expect(8080, "path.example", path, &[], 200, v1, INFRA);
        assert_eq!(page["path"], seen, "{path}");
    }
}

#[test]
fn request_mirrors() {
    let s = site(
        17,
        &route(
            "request-mirror",
            "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /mirror}}]
    filters: [{type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /multi-mirror}}]
    filters:
    - {type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v2, port: 8080}}}
    - {type: RequestMirror, requestMirror: {backendRef: {name: infra-backend-v3, port: 8080}}}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
",
        ),
    );
    s.expect(8080, &s.ip, "/mirror?n=1", &[], 200, "infra-backend-v1", INFRA);
    poll(Duration::from_secs(5), || {
        s.pods.served("infra-backend-v2", "/mirror?n=1").then_some(())
    })
    .expect("the mirror got the request");
    s.expect(8080, &s.ip, "/multi-mirror", &[], 200, "infra-backend-v1", INFRA);
    for pod in ["infra-backend-v2", "infra-backend-v3"] {
        poll(Duration::from_secs(5), || {
            s.pods.served(pod, "/multi-mirror").then_some(())
        })
        .unwrap_or_else(|| panic!("{pod} got the mirrored request"));
    }
}

#[test]
fn request_and_backend_timeouts() {
    let s = site(
        18,
        &route(
            "timeouts",
            "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /request-timeout}}]
    timeouts: {request: 500ms}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /disable-request-timeout}}]
    timeouts: {request: 0s}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /backend-timeout}}]
    timeouts: {backendRequest: 500ms}
    backendRefs: [{name: infra-backend-v1, port: 8080}]
",
        ),
    );
    let v1 = "infra-backend-v1";
    s.expect(8080, &s.ip, "/request-timeout", &[], 200, v1, INFRA);
    s.expect(8080, &s.ip, "/request-timeout?delay=1s", &[], 504, "", "");
    s.expect(8080, &s.ip, "/disable-request-timeout?delay=1s", &[], 200, v1, INFRA);
    s.expect(8080, &s.ip, "/backend-timeout", &[], 200, v1, INFRA);
    s.expect(8080, &s.ip, "/backend-timeout?delay=1s", &[], 504, "", "");
}

#[test]
fn ingress_and_gateway_share_a_port() {
    // A Gateway listener on the ALB's own port (8000): the Ingress rule for the very host and
    // path wins, the rest of the host goes to the HTTPRoute, and the shadowed rule is reported.
    let objects = format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: shared, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners: [{{name: http, port: 8000, protocol: HTTP}}]
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: legacy, namespace: {INFRA}}}
spec:
  ingressClassName: mzlb
  rules:
  - host: shared.example
    http:
      paths: [{{path: /legacy, pathType: Prefix, backend: {{service: {{name: infra-backend-v1, port: {{number: 8080}}}}}}}}]
{}",
        route(
            "moved",
            "  parentRefs: [{name: shared}]
  hostnames: [shared.example, gw-only.example]
  rules:
  - backendRefs: [{name: infra-backend-v2, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /legacy}}]
    backendRefs: [{name: infra-backend-v3, port: 8080}]
"
        )
    );
    let s = site(19, &objects);
    poll(Duration::from_secs(5), || {
        (s.get(8000, "gw-only.example", "/", &[]).status == 200).then_some(())
    })
    .expect("the Gateway listener shares the ALB's port");
    s.expect(8000, "shared.example", "/legacy/x", &[], 200, "infra-backend-v1", INFRA);
    s.expect(8000, "shared.example", "/other", &[], 200, "infra-backend-v2", INFRA);
    s.expect(8000, "gw-only.example", "/legacy", &[], 200, "infra-backend-v3", INFRA);
    s.expect(8000, "nobody.example", "/", &[], 404, "", "");
    let findings = check(&s.manifests());
    assert!(
        findings.contains(
            "RouteShadowed: host shared.example path /legacy on port 8000: Ingress gateway-conformance-infra/legacy serves it; HTTPRoute gateway-conformance-infra/moved rule 1 is shadowed there"
        ),
        "{findings}"
    );
    assert!(
        s.alb.output().contains("is shadowed there"),
        "logged too:\n{}",
        s.alb.output()
    );
    let out = run(Command::new(crate::harness::bin("mzlb"))
        .args(["routes", "--manifests"])
        .arg(s.manifests()));
    let listing = String::from_utf8_lossy(&out.stdout);
    let line = |needles: &[&str]| listing.lines().any(|l| needles.iter().all(|n| l.contains(n)));
    assert!(
        line(&[
            "8000",
            "shared.example",
            "Prefix /legacy",
            "Ingress gateway-conformance-infra/legacy",
            "infra-backend-v1:8080"
        ]),
        "{listing}"
    );
    assert!(
        line(&[
            "8000",
            "shared.example",
            "PathPrefix /legacy",
            "HTTPRoute gateway-conformance-infra/moved rule 1",
            "infra-backend-v3:8080 weight 1"
        ]),
        "{listing}"
    );
}

#[test]
fn grpc_routes_reach_h2c_backends_by_service_and_method() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let seen = crate::grpc::grpc_backend(&rt, "127.0.112.20:4000", "grpc-echo", false);
    let objects = format!(
        "---
apiVersion: v1
kind: Service
metadata: {{name: grpc-infra-backend, namespace: {INFRA}}}
spec: {{ports: [{{name: grpc, port: 8080, appProtocol: kubernetes.io/h2c}}]}}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: grpc-infra-backend-0, namespace: {INFRA}, labels: {{kubernetes.io/service-name: grpc-infra-backend}}}}
addressType: IPv4
ports: [{{name: grpc, port: 4000}}]
endpoints: [{{addresses: [127.0.112.20]}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {{name: exact-matching, namespace: {INFRA}}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [grpc.example]
  rules:
  - matches: [{{method: {{service: echo.Echo, method: Say}}}}]
    backendRefs: [{{name: grpc-infra-backend, port: 8080}}]
  - matches: [{{method: {{service: echo.Other}}}}]
    backendRefs: [{{name: grpc-infra-backend, port: 8080}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: h2c, namespace: {INFRA}}}
spec:
  parentRefs: [{{name: same-namespace}}]
  hostnames: [h2c.example]
  rules: [{{backendRefs: [{{name: grpc-infra-backend, port: 8080}}]}}]
"
    );
    let s = site(20, &objects);
    // HTTPRouteBackendProtocolH2C: an HTTP/1.1 request, HTTP/2 in clear to the backend, as its
    // Service port's appProtocol says.
    let r = s.get(8080, "h2c.example", "/plain", &[]);
    assert_eq!(r.status, 200, "{r:?}");
    let call = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!((call.version, call.path.as_str()), (hyper::Version::HTTP_2, "/plain"));
    let alb = format!("{}:8080", s.ip);
    let (status, body, trailers) = crate::grpc::call_at(&rt, &alb, "grpc.example", "/echo.Echo/Say");
    assert_eq!(status, 200);
    assert!(body.ends_with(b"grpc-echo"), "{body:?}");
    assert_eq!(trailers.unwrap()["grpc-status"], "0", "trailers come back");
    let call = seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(call.version, hyper::Version::HTTP_2, "h2c to the backend");
    assert_eq!(call.te.as_deref(), Some("trailers"));
    assert_eq!(call.path, "/echo.Echo/Say");
    assert_eq!(
        crate::grpc::call_at(&rt, &alb, "grpc.example", "/echo.Other/Anything").0,
        200
    );
    assert_eq!(
        crate::grpc::call_at(&rt, &alb, "grpc.example", "/echo.Echo/Other").0,
        404,
        "another method"
    );
    assert_eq!(
        crate::grpc::call_at(&rt, &alb, "other.example", "/echo.Echo/Say").0,
        404,
        "another host"
    );
    let findings = check(&s.manifests());
    assert!(!findings.contains("GRPCRoute"), "accepted: {findings}");
}

#[test]
fn backend_tls_policy_verifies_the_backend() {
    // A CA, and a backend certificate it issued for backend.example.
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "backend CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["backend.example".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config =
        rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone()], key)
            .unwrap();
    let pod = Pod {
        addr: "127.0.112.21:4443".parse().unwrap(),
        namespace: INFRA.into(),
        name: "tls-backend-a".into(),
        tls: Some(std::sync::Arc::new(config)),
    };
    let other_ca = rcgen::generate_simple_self_signed(vec!["other".to_owned()])
        .unwrap()
        .cert
        .pem();
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let service = |name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec: {{ports: [{{name: https, port: 443}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-0, namespace: {INFRA}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: https, port: 4443}}]\nendpoints: [{{addresses: [127.0.112.21]}}]\n"
        )
    };
    let policy = |name: &str, service: &str, configmap: &str, hostname: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  targetRefs: [{{group: '', kind: Service, name: {service}}}]\n  \
             validation: {{caCertificateRefs: [{{group: '', kind: ConfigMap, name: {configmap}}}], hostname: {hostname}}}\n"
        )
    };
    let configmap = |name: &str, pem: &str| {
        format!(
            "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: {INFRA}}}\ndata:\n  ca.crt: |\n{}",
            indent(pem)
        )
    };
    let rule = |prefix: &str, service: &str| {
        format!(
            "  - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]\n    backendRefs: [{{name: {service}, port: 443}}]\n"
        )
    };
    let objects = [
        service("tls-backend"),
        service("tls-wrong-ca"),
        service("tls-wrong-name"),
        service("tls-missing-ca"),
        service("tls-no-policy"),
        configmap("backend-ca", &ca_cert.pem()),
        configmap("other-ca", &other_ca),
        policy("good", "tls-backend", "backend-ca", "backend.example"),
        policy("wrong-ca", "tls-wrong-ca", "other-ca", "backend.example"),
        policy("wrong-name", "tls-wrong-name", "backend-ca", "other.example"),
        policy("missing-ca", "tls-missing-ca", "nonexistent", "backend.example"),
        route(
            "backend-tls",
            &format!(
                "  parentRefs: [{{name: same-namespace}}]\n  hostnames: [tls.example]\n  rules:\n{}{}{}{}{}",
                rule("/good", "tls-backend"),
                rule("/wrong-ca", "tls-wrong-ca"),
                rule("/wrong-name", "tls-wrong-name"),
                rule("/missing-ca", "tls-missing-ca"),
                rule("/no-policy", "tls-no-policy")
            ),
        ),
    ];
    let s = site_with(21, &objects.concat(), vec![pod]);
    let page = s.expect(8080, "tls.example", "/good", &[], 200, "tls-backend", INFRA);
    assert_eq!(page["tls"], true, "TLS to the backend");
    s.expect(8080, "tls.example", "/wrong-ca", &[], 502, "", "");
    s.expect(8080, "tls.example", "/wrong-name", &[], 502, "", "");
    s.expect(8080, "tls.example", "/missing-ca", &[], 500, "", "");
    s.expect(8080, "tls.example", "/no-policy", &[], 502, "", "");
    let findings = check(&s.manifests());
    assert!(
        findings.contains("BackendTLSPolicy gateway-conformance-infra/missing-ca: Accepted"),
        "{findings}"
    );
    assert!(findings.contains("InvalidCACertificateRef"), "{findings}");
    assert!(
        findings.contains("InvalidBackendTLSPolicy"),
        "the route names it: {findings}"
    );
}

#[test]
fn an_https_listener_is_never_served_in_clear() {
    // An HTTPS listener on the ALB's own plain port (as `--gateway-ports 80=8080` would bring
    // one on port 80): its routes are not served to plain HTTP.
    let objects = format!(
        "---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: tls-on-plain, namespace: {INFRA}}}
spec:
  gatewayClassName: mzlb
  listeners:
  - name: https
    port: 8000
    protocol: HTTPS
    hostname: example.org
    tls: {{certificateRefs: [{{name: tls-validity-checks-certificate}}]}}
{}",
        route(
            "secret",
            "  parentRefs: [{name: tls-on-plain}]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]\n"
        )
    );
    let s = site(22, &objects);
    let findings = check(&s.manifests());
    assert!(
        findings.contains(
            "Gateway gateway-conformance-infra/tls-on-plain listener https: Accepted port 8000 is served by the ALB in clear"
        ),
        "{findings}"
    );
    assert!(findings.contains("PortUnavailable"), "{findings}");
    s.expect(8000, "example.org", "/", &[], 404, "", "");
}

#[test]
fn grpc_routes_reach_tls_backends_verified_by_their_policy() {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(rcgen::DnType::CommonName, "grpc CA");
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let leaf_key = rcgen::KeyPair::generate().unwrap();
    let leaf = rcgen::CertificateParams::new(vec!["grpc.backend.example".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &issuer)
        .unwrap();
    let key = rustls::pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.der().clone()], key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let seen = crate::grpc::grpc_backend_with(&rt, "127.0.112.23:4443", "grpc-tls", Some(acceptor));
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let service = |name: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {INFRA}}}\nspec: {{ports: [{{name: grpc, port: 443}}]}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-0, namespace: {INFRA}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: grpc, port: 4443}}]\nendpoints: [{{addresses: [127.0.112.23]}}]\n"
        )
    };
    let policy = |name: &str, service: &str, hostname: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  targetRefs: [{{group: '', kind: Service, name: {service}}}]\n  \
             validation: {{caCertificateRefs: [{{group: '', kind: ConfigMap, name: grpc-ca}}], hostname: {hostname}}}\n"
        )
    };
    let objects = format!(
        "{}{}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: grpc-ca, namespace: {INFRA}}}\ndata:\n  ca.crt: |\n{}{}{}\
         ---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: grpc-tls, namespace: {INFRA}}}\n\
         spec:\n  parentRefs: [{{name: same-namespace}}]\n  hostnames: [grpc.example]\n  rules:\n  \
         - {{matches: [{{method: {{service: echo.Echo}}}}], backendRefs: [{{name: grpc-tls-backend, port: 443}}]}}\n  \
         - {{matches: [{{method: {{service: echo.Wrong}}}}], backendRefs: [{{name: grpc-tls-wrong-name, port: 443}}]}}\n",
        service("grpc-tls-backend"),
        service("grpc-tls-wrong-name"),
        indent(&ca_cert.pem()),
        policy("grpc-good", "grpc-tls-backend", "grpc.backend.example"),
        policy("grpc-wrong-name", "grpc-tls-wrong-name", "other.example"),
    );
    let s = site(23, &objects);
    let alb = format!("{}:8080", s.ip);
    let (status, body, trailers) = crate::grpc::call_at(&rt, &alb, "grpc.example", "/echo.Echo/Say");
    assert_eq!(status, 200, "{body:?}");
    assert!(body.ends_with(b"grpc-tls"), "{body:?}");
    assert_eq!(trailers.unwrap()["grpc-status"], "0");
    assert_eq!(seen.lock().unwrap().len(), 1, "one verified TLS call");
    let (status, _, _) = crate::grpc::call_at(&rt, &alb, "grpc.example", "/echo.Wrong/Say");
    assert_eq!(status, 502, "a certificate not for the policy's hostname is refused");
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[test]
fn ingress_certificates_win_their_names_on_a_shared_tls_port() {
    // The base HTTPS Gateway listener has no hostname, on 8443, which here is also the ALB's
    // own TLS port: an Ingress's certificate is still the one shown for the Ingress's host.
    let mut params = rcgen::CertificateParams::new(vec!["ingress.example".to_owned()]).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "ingress.example");
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let objects = format!(
        "---
apiVersion: v1
kind: Secret
metadata: {{name: ingress-cert, namespace: {INFRA}}}
type: kubernetes.io/tls
stringData:
  tls.crt: |
{}  tls.key: |
{}---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: tls-ingress, namespace: {INFRA}}}
spec:
  ingressClassName: mzlb
  tls: [{{hosts: [ingress.example], secretName: ingress-cert}}]
  rules:
  - host: ingress.example
    http:
      paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: infra-backend-v1, port: {{number: 8080}}}}}}}}]
",
        indent(&cert.pem()),
        indent(&key.serialize_pem())
    );
    let s = site_full(24, &objects, Vec::new(), Some(8443));
    let ca = write(s.dir.path(), "ingress-ca.pem", &cert.pem());
    let resolve = format!("ingress.example:8443:{}", s.ip);
    let r = http(&[
        "--resolve",
        &resolve,
        "--cacert",
        &ca.to_string_lossy(),
        "https://ingress.example:8443/",
    ]);
    r.expect(200, "infra-backend-v1", INFRA, "the Ingress's certificate and rule");
    // Other names still get the Gateway listener's certificate.
    s.get_tls(8443, "example.org", "example.org", "/")
        .expect(404, "", "", "the Gateway's certificate");
}

#[test]
fn service_types() {
    // HTTPRouteServiceTypes: headless Services and Services whose EndpointSlices were written by
    // hand (no selector) reach their endpoints (the pod's address, port 3001 here).
    let svc = |name: &str, headless: bool, selector: bool| {
        let cluster_ip = if headless { ", clusterIP: None" } else { "" };
        let selector = if selector {
            ", selector: {app: infra-backend-v1}"
        } else {
            ""
        };
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec: {{ports: [{{name: first-port, port: 8080, targetPort: 3000}}]{cluster_ip}{selector}}}\n\
             ---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\n\
             metadata: {{name: {name}-x, namespace: {INFRA}, labels: {{kubernetes.io/service-name: {name}}}}}\n\
             addressType: IPv4\nports: [{{name: first-port, port: 3001}}]\n\
             endpoints: [{{addresses: [127.0.112.25], conditions: {{ready: true, serving: true}}}}]\n"
        )
    };
    let rule = |path: &str| {
        format!(
            "  - {{matches: [{{path: {{type: Exact, value: /{path}}}}}], backendRefs: [{{name: {path}, port: 8080}}]}}\n"
        )
    };
    let objects = format!(
        "{}{}{}{}",
        svc("manual-endpointslices", false, false),
        svc("headless", true, true),
        svc("headless-manual-endpointslices", true, false),
        route(
            "service-types",
            &format!(
                "  parentRefs: [{{name: same-namespace}}]\n  rules:\n{}{}{}",
                rule("manual-endpointslices"),
                rule("headless"),
                rule("headless-manual-endpointslices")
            )
        )
    );
    let s = site(25, &objects);
    for path in ["/manual-endpointslices", "/headless", "/headless-manual-endpointslices"] {
        s.expect(8080, &s.ip, path, &[], 200, "infra-backend-v1", INFRA);
    }
}

#[test]
fn cors_filter() {
    // HTTPRouteCORS: preflights answered by the ALB, origin fields on actual answers.
    let s = site(
        26,
        &route(
            "cors",
            "  parentRefs: [{name: same-namespace}]
  rules:
  - matches: [{path: {type: PathPrefix, value: /cors-1}}]
    filters:
    - type: CORS
      cors:
        allowOrigins: ['https://www.foo.com', 'https://*.bar.com']
        allowMethods: [GET, OPTIONS]
        allowHeaders: [x-header-1, x-header-2]
        exposeHeaders: [x-header-3, x-header-4]
        allowCredentials: true
        maxAge: 3600
    backendRefs: [{name: infra-backend-v1, port: 8080}]
  - matches: [{path: {type: PathPrefix, value: /cors-wildcard-origin}}]
    filters: [{type: CORS, cors: {allowOrigins: ['*'], allowMethods: [PUT]}}]
    backendRefs: [{name: infra-backend-v1, port: 8080}]
",
        ),
    );
    let preflight = |path: &str, origin: &str, method: &str| {
        s.request(
            "OPTIONS",
            8080,
            "cors.example",
            path,
            &[("Origin", origin), ("Access-Control-Request-Method", method)],
        )
    };
    for origin in ["https://www.foo.com", "https://xpto.www.bar.com"] {
        let r = preflight("/cors-1", origin, "GET");
        assert!(matches!(r.status, 200 | 204), "{r:?}");
        assert_eq!(r.header("access-control-allow-origin"), Some(origin));
        assert_eq!(r.header("access-control-allow-methods"), Some("GET, OPTIONS"));
        assert_eq!(r.header("access-control-allow-headers"), Some("x-header-1, x-header-2"));
        assert_eq!(
            r.header("access-control-expose-headers"),
            Some("x-header-3, x-header-4")
        );
        assert_eq!(r.header("access-control-max-age"), Some("3600"));
        assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
        assert!(
            s.pods
                .log
                .lock()
                .unwrap()
                .iter()
                .all(|(_, t)| !t.starts_with("/cors-1")),
            "answered by the ALB"
        );
    }
    let r = preflight("/cors-1", "https://evil.test", "GET");
    assert_eq!(r.header("access-control-allow-origin"), None, "{r:?}");
    let r = preflight("/cors-wildcard-origin", "https://foobar.com:12345", "PUT");
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(r.header("access-control-allow-credentials"), None);
    // The actual request goes to the backend and comes back with the origin fields.
    let r = s.get(8080, "cors.example", "/cors-1/x", &[("Origin", "https://www.foo.com")]);
    r.expect(200, "infra-backend-v1", INFRA, "actual request");
    assert_eq!(r.header("access-control-allow-origin"), Some("https://www.foo.com"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    let r = s.get(8080, "cors.example", "/cors-1/x", &[("Origin", "https://evil.test")]);
    r.expect(200, "infra-backend-v1", INFRA, "actual request, origin not allowed");
    assert_eq!(r.header("access-control-allow-origin"), None);
}

#[test]
fn invalid_references_and_listener_hostname_updates() {
    // HTTPRouteInvalidReferenceGrant: seven ReferenceGrants, none of which permits the route.
    let wrong = |name: &str, ns: &str, from: (&str, &str, &str), to: (&str, &str, Option<&str>)| {
        let to_name = to.2.map_or(String::new(), |n| format!(", name: {n}"));
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: ReferenceGrant\nmetadata: {{name: {name}, namespace: {ns}}}\n\
             spec:\n  from: [{{group: '{}', kind: {}, namespace: {}}}]\n  to: [{{group: '{}', kind: {}{to_name}}}]\n",
            from.0, from.1, from.2, to.0, to.1
        )
    };
    let gw = "gateway.networking.k8s.io";
    let grants = [
        wrong(
            "reference-grant-wrong-namespace",
            INFRA,
            (gw, "HTTPRoute", INFRA),
            ("", "Service", Some("web-backend")),
        ),
        wrong(
            "reference-grant-wrong-from-group",
            WEB,
            ("not-the-group-youre-looking-for", "HTTPRoute", INFRA),
            ("", "Service", Some("web-backend")),
        ),
        wrong(
            "reference-grant-wrong-from-kind",
            WEB,
            (gw, "Gateway", INFRA),
            ("", "Service", Some("web-backend")),
        ),
        wrong(
            "reference-grant-wrong-from-namespace",
            WEB,
            (gw, "HTTPRoute", "not-the-namespace-youre-looking-for"),
            ("", "Service", Some("web-backend")),
        ),
        wrong(
            "reference-grant-wrong-to-group",
            WEB,
            (gw, "HTTPRoute", INFRA),
            ("not-the-group-youre-looking-for", "Service", Some("web-backend")),
        ),
        wrong(
            "reference-grant-wrong-to-kind",
            WEB,
            (gw, "HTTPRoute", INFRA),
            ("", "Secret", Some("web-backend")),
        ),
        wrong(
            "reference-grant-wrong-to-name",
            WEB,
            (gw, "HTTPRoute", INFRA),
            ("", "Service", Some("not-the-service-youre-looking-for")),
        ),
    ];
    // GatewayInvalidTLSConfiguration: unusable certificate references; the control routes work.
    let tls_gateway = |name: &str, port: u16, cert: &str, control_port: u16| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: {name}, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: mzlb\n  listeners:\n  - {{name: http, port: {control_port}, protocol: HTTP}}\n  \
             - {{name: https, port: {port}, protocol: HTTPS, allowedRoutes: {{namespaces: {{from: All}}}}, tls: {{certificateRefs: [{cert}]}}}}\n\
             ---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}-control, namespace: {INFRA}}}\n\
             spec:\n  parentRefs: [{{name: {name}, sectionName: http}}]\n  hostnames: [{name}.example.com]\n  \
             rules: [{{backendRefs: [{{name: infra-backend-v1, port: 8080}}]}}]\n"
        )
    };
    let objects = [
        grants.concat(),
        route(
            "reference-grant",
            &format!(
                "  parentRefs: [{{name: same-namespace}}]\n  hostnames: [refused.example]\n  rules: [{{backendRefs: [{{name: web-backend, namespace: {WEB}, port: 8080}}]}}]\n"
            ),
        ),
        // HTTPRouteInvalidParentRefNotMatchingSectionName
        route(
            "httproute-listener-not-matching-section-name",
            "  parentRefs: [{name: same-namespace, sectionName: http1}]\n  hostnames: [section.example]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]\n",
        ),
        tls_gateway(
            "unsupported-group",
            8451,
            "{group: wrong.group.company.io, kind: Secret, name: tls-validity-checks-certificate}",
            8091,
        ),
        tls_gateway(
            "unsupported-kind",
            8452,
            "{group: '', kind: WrongKind, name: tls-validity-checks-certificate}",
            8092,
        ),
        tls_gateway(
            "malformed",
            8453,
            "{group: '', kind: Secret, name: malformed-certificate}",
            8093,
        ),
        format!(
            "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: malformed-certificate, namespace: {INFRA}}}\ntype: kubernetes.io/tls\n\
             data: {{tls.crt: SGVsbG8gd29ybGQ=, tls.key: SGVsbG8gd29ybGQ=}}\n"
        ),
    ];
    let hostname_gateway = |hostname: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: gateway-update-listener-hostname, namespace: {INFRA}}}\n\
             spec:\n  gatewayClassName: mzlb\n  listeners: [{{name: http, port: 8094, protocol: HTTP, hostname: {hostname}}}]\n{}",
            route(
                "httproute-update-listener-hostname",
                "  parentRefs: [{name: gateway-update-listener-hostname}]\n  hostnames: [accepted.example.com]\n  rules: [{backendRefs: [{name: infra-backend-v1, port: 8080}]}]\n",
            )
        )
    };
    let s = site(27, &objects.concat());
    write(&s.manifests(), "hostname.yaml", &hostname_gateway("other.example.com"));
    poll(Duration::from_secs(5), || {
        (s.get(8094, "other.example.com", "/", &[]).status == 404).then_some(())
    })
    .expect("the Gateway is served, the route is not attached");
    s.expect(8080, "refused.example", "/", &[], 500, "", "");
    s.expect(8080, "section.example", "/", &[], 404, "", "");
    for (name, port) in [
        ("unsupported-group", 8091),
        ("unsupported-kind", 8092),
        ("malformed", 8093),
    ] {
        s.expect(
            port,
            &format!("{name}.example.com"),
            "/",
            &[],
            200,
            "infra-backend-v1",
            INFRA,
        );
    }
    for port in [8451, 8452, 8453] {
        assert_eq!(
            s.get_tls(port, "example.org", "example.org", "/").status,
            0,
            "no TLS on {port}"
        );
    }
    let findings = check(&s.manifests());
    let has = |what: &str, reason: &str| findings.lines().any(|l| l.contains(what) && l.contains(reason));
    assert!(
        has(
            "HTTPRoute gateway-conformance-infra/reference-grant ",
            "RefNotPermitted"
        ),
        "{findings}"
    );
    assert!(
        has("httproute-listener-not-matching-section-name", "NoMatchingParent"),
        "{findings}"
    );
    assert!(
        has("httproute-update-listener-hostname", "NoMatchingListenerHostname"),
        "{findings}"
    );
    for gateway in ["unsupported-group", "unsupported-kind", "malformed"] {
        assert!(
            has(
                &format!("Gateway gateway-conformance-infra/{gateway} listener https"),
                "InvalidCertificateRef"
            ),
            "{gateway}: {findings}"
        );
    }
    // GatewayUpdateListenerHostname: the listener's hostname changed, the route attaches.
    write(
        &s.manifests(),
        "hostname.yaml",
        &hostname_gateway("accepted.example.com"),
    );
    poll(Duration::from_secs(5), || {
        (s.get(8094, "accepted.example.com", "/", &[]).status == 200).then_some(())
    })
    .expect("the route attaches once the listener's hostname matches");
    s.expect(8094, "accepted.example.com", "/", &[], 200, "infra-backend-v1", INFRA);
    assert!(!check(&s.manifests()).contains("httproute-update-listener-hostname"));
}
