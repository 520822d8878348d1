//! TLS termination through a running zone-alb, with real curl: certificates from Ingress
//! `spec.tls` Secrets chosen by SNI (exact and wildcard), the default certificate for unknown
//! names, HTTP/2 by ALPN, X-Forwarded-Proto, and ssl-redirect / force-ssl-redirect.

use std::process::Command;

use crate::harness::{echo, field, run, single_alb_site, tempdir, write, zone_alb};

fn secret(name: &str, host: &str) -> (String, String) {
    let generated = rcgen::generate_simple_self_signed(vec![host.to_owned()]).unwrap();
    let (cert, key) = (generated.cert.pem(), generated.signing_key.serialize_pem());
    let indent = |pem: &str| pem.lines().map(|l| format!("    {l}\n")).collect::<String>();
    let doc = format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: {name}}}\ntype: kubernetes.io/tls\nstringData:\n  tls.crt: |\n{}  tls.key: |\n{}",
        indent(&cert),
        indent(&key)
    );
    (doc, cert)
}

fn ingress(name: &str, host: &str, tls: Option<(&str, &str)>, annotations: &str) -> String {
    let tls = tls.map_or(String::new(), |(h, s)| {
        format!("  tls:\n  - hosts: ['{h}']\n    secretName: {s}\n")
    });
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n{annotations}spec:\n  ingressClassName: mzlb\n{tls}  rules:\n  - host: '{host}'\n    http:\n      paths:\n      - {{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}\n"
    )
}

/// Runs curl; returns (HTTP code, HTTP version, body, stderr).
fn curl(args: &[&str]) -> (u16, String, String, String) {
    let out = run(Command::new("curl")
        .args(["-s", "-v", "--max-time", "5", "-w", "\n%{http_code} %{http_version}"])
        .args(args));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, tail) = stdout.rsplit_once('\n').unwrap_or(("", "0 0"));
    let (code, version) = tail.split_once(' ').unwrap_or(("0", "0"));
    (
        code.parse().unwrap_or(0),
        version.to_owned(),
        body.to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn tls_termination_with_sni_http2_and_redirects() {
    let dir = tempdir();
    let (shop_secret, shop_cert) = secret("shop-tls", "shop.test");
    let (wild_secret, wild_cert) = secret("wild-tls", "*.wild.test");
    let shop_ca = write(dir.path(), "certs/shop.pem", &shop_cert);
    let wild_ca = write(dir.path(), "certs/wild.pem", &wild_cert);
    let mut docs = single_alb_site("127.0.19.1", Some(8443), "127.0.19.11");
    docs.extend([
        shop_secret,
        wild_secret,
        ingress("shop", "shop.test", Some(("shop.test", "shop-tls")), ""),
        ingress("wild", "*.wild.test", Some(("*.wild.test", "wild-tls")), ""),
        ingress("plain", "plain.test", None, ""),
        ingress(
            "forced",
            "forced.test",
            None,
            "  annotations: {nginx.ingress.kubernetes.io/force-ssl-redirect: 'true'}\n",
        ),
        ingress("lost", "lost.test", Some(("lost.test", "no-such-secret")), ""),
    ]);
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let _backend = echo("127.0.19.11:9080", "app");
    let alb = zone_alb(dir.path(), &[], "http://127.0.19.1:8080/healthz");
    let https = |host: &str, ca: &std::path::Path, extra: &[&str]| {
        let resolve = format!("{host}:8443:127.0.19.1");
        let url = format!("https://{host}:8443/");
        let mut args = vec!["--cacert", ca.to_str().unwrap(), "--resolve", &resolve];
        args.extend_from_slice(extra);
        args.push(&url);
        curl(&args)
    };

    // SNI picks the Ingress's certificate, verified against it; HTTP/2 by ALPN.
    let (code, version, page, log) = https("shop.test", &shop_ca, &["--http2"]);
    assert_eq!((code, version.as_str()), (200, "2"), "{log}");
    assert_eq!(field(&page, "X-Forwarded-Proto"), Some("https"), "{page}");
    assert_eq!(field(&page, "X-Forwarded-Host"), Some("shop.test:8443"), "{page}");
    let (code, version, _, log) = https("shop.test", &shop_ca, &["--http1.1"]);
    assert_eq!((code, version.as_str()), (200, "1.1"), "{log}");
    // A wildcard certificate covers one label.
    assert_eq!(https("a.wild.test", &wild_ca, &[]).0, 200);
    assert_eq!(
        https("a.wild.test", &shop_ca, &[]).0,
        0,
        "the shop certificate is not served for a.wild.test"
    );
    // Unknown names and a missing Secret get the default certificate; the warning names it.
    let (code, _, _, log) = https("plain.test", &shop_ca, &["-k"]);
    assert_eq!(code, 200, "{log}");
    assert!(log.contains("mzlb-default-certificate"), "{log}");
    assert!(
        https("lost.test", &shop_ca, &["-k"])
            .3
            .contains("mzlb-default-certificate")
    );
    assert!(
        alb.output().contains("Secret default/no-such-secret not found"),
        "{}",
        alb.output()
    );

    // ssl-redirect: hosts with TLS go to HTTPS (308, path and query kept); others do not
    // unless forced.
    let (code, _, _, log) = curl(&[
        "--resolve",
        "shop.test:8080:127.0.19.1",
        "http://shop.test:8080/cart?item=1",
    ]);
    assert_eq!(code, 308, "{log}");
    assert!(
        log.contains("< location: https://shop.test:8443/cart?item=1")
            || log.contains("< Location: https://shop.test:8443/cart?item=1"),
        "{log}"
    );
    assert_eq!(
        curl(&["--resolve", "plain.test:8080:127.0.19.1", "http://plain.test:8080/"]).0,
        200
    );
    assert_eq!(
        curl(&["--resolve", "forced.test:8080:127.0.19.1", "http://forced.test:8080/"]).0,
        308
    );
}
