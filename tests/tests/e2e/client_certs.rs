//! Client certificates per host (`auth-tls-*`) through a running zone-alb, with real curl
//! presenting certificates from test CAs (rcgen), and a backend that shows what it was told.

use std::path::{Path, PathBuf};

use crate::auth_fakes::{Fake, Reply, backend, fields};
use crate::harness::{curl, head_fields, run, single_alb_site, tempdir, write, zone_alb};
use crate::tls_annotations::{Ca, ingress, secret};

/// A client certificate from `ca`: subject `O=Example, CN=<cn>`, valid from `from` to `to`
/// (years), serial `serial`. Returns (certificate PEM, key PEM).
fn client_cert(ca: &Ca, cn: &str, (from, to): (i32, i32), serial: u64) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::OrganizationName, "Example");
    params.distinguished_name.push(rcgen::DnType::CommonName, cn);
    params.not_before = rcgen::date_time_ymd(from, 1, 1);
    params.not_after = rcgen::date_time_ymd(to, 1, 1);
    params.serial_number = Some(rcgen::SerialNumber::from(serial));
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, ca.issuer()).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// A revocation list from `ca` naming `serials`.
fn crl(ca: &Ca, serials: &[u64]) -> String {
    let params = rcgen::CertificateRevocationListParams {
        this_update: rcgen::date_time_ymd(2024, 1, 1),
        next_update: rcgen::date_time_ymd(2099, 1, 1),
        crl_number: rcgen::SerialNumber::from(1u64),
        issuing_distribution_point: None,
        revoked_certs: serials
            .iter()
            .map(|s| rcgen::RevokedCertParams {
                serial_number: rcgen::SerialNumber::from(*s),
                revocation_time: rcgen::date_time_ymd(2024, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect(),
        key_identifier_method: rcgen::KeyIdMethod::Sha256,
    };
    params.signed_by(ca.issuer()).unwrap().pem().unwrap()
}

/// Writes a certificate and key as files for curl.
fn files(dir: &Path, name: &str, (cert, key): &(String, String)) -> (PathBuf, PathBuf) {
    (
        write(dir, &format!("certs/{name}.crt"), cert),
        write(dir, &format!("certs/{name}.key"), key),
    )
}

const ALB: &str = "127.0.53.1";

/// `curl -k` over HTTPS to `sni` (port 8443 of the ALB), with `cert` if any; `extra` args
/// come before the URL. Returns (status, body, response head).
fn https(sni: &str, cert: Option<&(PathBuf, PathBuf)>, extra: &[&str]) -> (u16, String, String) {
    let resolve = format!("{sni}:8443:{ALB}");
    let url = format!("https://{sni}:8443/");
    let mut cmd = std::process::Command::new("curl");
    cmd.args([
        "-s",
        "-k",
        "--max-time",
        "5",
        "-D",
        "/dev/stderr",
        "--resolve",
        &resolve,
    ]);
    if let Some((crt, key)) = cert {
        cmd.arg("--cert").arg(crt).arg("--key").arg(key);
    }
    cmd.args(extra).args(["-w", "\n%{http_code}"]).arg(&url);
    let out = run(&mut cmd);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", "0"));
    (
        code.trim().parse().unwrap_or(0),
        body.to_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn client_certificates_are_verified_per_host_as_ingress_nginx_does() {
    let dir = tempdir();
    let ca = Ca::new("client-ca");
    let stranger = Ca::new("stranger-ca");
    let alice = files(dir.path(), "alice", &client_cert(&ca, "alice", (2024, 2099), 10));
    let bob = files(dir.path(), "bob", &client_cert(&ca, "bob", (2024, 2099), 11));
    let revoked = files(dir.path(), "revoked", &client_cert(&ca, "mallory", (2024, 2099), 12));
    let expired = files(dir.path(), "expired", &client_cert(&ca, "old", (2000, 2001), 13));
    let foreign = files(dir.path(), "foreign", &client_cert(&stranger, "eve", (2024, 2099), 14));
    let ca_pem = ca.cert.pem();
    let crl_pem = crl(&ca, &[12]);

    let mut docs = single_alb_site(ALB, Some(8443), "127.0.53.11");
    let on = [("auth-tls-secret", "default/client-ca")];
    let with = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
        on.iter().copied().chain(extra.iter().copied()).collect()
    };
    docs.extend([
        secret("client-ca", &[("ca.crt", &ca_pem)]),
        secret("client-ca-crl", &[("ca.crt", &ca_pem), ("ca.crl", &crl_pem)]),
        secret("no-ca", &[("other", "x")]),
        ingress(
            "on",
            "on.test",
            &with(&[("auth-tls-pass-certificate-to-upstream", "true")]),
        ),
        ingress(
            "optional",
            "optional.test",
            &with(&[("auth-tls-verify-client", "optional")]),
        ),
        ingress(
            "no-ca-check",
            "noca.test",
            &with(&[("auth-tls-verify-client", "optional_no_ca")]),
        ),
        ingress("off", "off.test", &with(&[("auth-tls-verify-client", "off")])),
        ingress(
            "error-page",
            "errpage.test",
            &with(&[("auth-tls-error-page", "https://login.test/certificate")]),
        ),
        ingress("cn", "cn.test", &with(&[("auth-tls-match-cn", "CN=alice,")])),
        ingress("crl", "crl.test", &[("auth-tls-secret", "default/client-ca-crl")]),
        ingress(
            "missing",
            "missing.test",
            &[("auth-tls-secret", "default/no-such-secret")],
        ),
        ingress("unusable", "unusable.test", &[("auth-tls-secret", "default/no-ca")]),
        ingress("plain", "plain.test", &[]),
        // The auth service is told the verified certificate, never the client's own fields.
        ingress(
            "authurl",
            "authurl.test",
            &with(&[
                ("auth-tls-verify-client", "optional"),
                ("auth-url", "http://127.0.53.12:9081/auth"),
            ]),
        ),
        // An alias is an exact name of its Ingress: its settings, not a wildcard's, apply; an
        // exact host without client certificates is not checked under a wildcard's.
        ingress("aliased", "owner.test", &with(&[("server-alias", "alias.wild.test")])),
        ingress("wild", "*.wild.test", &with(&[("auth-tls-verify-client", "off")])),
        ingress("exact", "exact.wild.test", &[]),
        // The redirect to the www. name asks for no certificate (nginx's redirect server).
        ingress("www", "www.redirect.test", &with(&[("from-to-www-redirect", "true")])),
    ]);
    write(dir.path(), "site.yaml", &docs.join("---\n"));
    let _backend = backend("127.0.53.11:9080");
    let auth_service = Fake::start("127.0.53.12:9081", |_| Reply::new(200));
    let alb = zone_alb(dir.path(), &[], &format!("http://{ALB}:8080/healthz"));
    let log = || alb.output();

    // `on`: no certificate, a stranger's, an expired one: 400 with nginx's words.
    let (code, body, _) = https("on.test", None, &[]);
    assert_eq!(
        (code, body.as_str()),
        (400, "No required SSL certificate was sent\n"),
        "{}",
        log()
    );
    // A client claiming a verification in a field does not get one.
    assert_eq!(https("on.test", None, &["-H", "ssl-client-verify: SUCCESS"]).0, 400);
    for cert in [&foreign, &expired] {
        let (code, body, _) = https("on.test", Some(cert), &[]);
        assert_eq!((code, body.as_str()), (400, "The SSL certificate error\n"));
    }
    // A verified certificate: the backend is told, with nginx's field names and formats; what
    // the client sent under those names is replaced.
    let (code, page, _) = https(
        "on.test",
        Some(&alice),
        &[
            "-H",
            "ssl-client-subject-dn: CN=admin",
            "-H",
            "ssl-client-verify: FORGED",
        ],
    );
    assert_eq!(code, 200, "{page}\n{}", log());
    assert_eq!(fields(&page, "ssl-client-verify"), ["SUCCESS"]);
    assert_eq!(fields(&page, "ssl-client-subject-dn"), ["CN=alice,O=Example"]);
    assert_eq!(fields(&page, "ssl-client-issuer-dn"), ["CN=client-ca"]);
    let escaped = fields(&page, "ssl-client-cert");
    assert_eq!(escaped.len(), 1, "{page}");
    assert!(escaped[0].starts_with("-----BEGIN%20CERTIFICATE-----%0AMII"), "{page}");
    assert!(escaped[0].ends_with("%0A-----END%20CERTIFICATE-----%0A"), "{page}");
    // Over HTTP/2 too.
    assert_eq!(https("on.test", Some(&alice), &["--http2"]).0, 200);

    // `optional`: without a certificate the request passes and the backend is told NONE; a
    // certificate that fails is 400 as nginx answers it.
    let (code, page, _) = https("optional.test", None, &[]);
    assert_eq!(code, 200, "{page}");
    assert_eq!(fields(&page, "ssl-client-verify"), ["NONE"]);
    assert!(fields(&page, "ssl-client-subject-dn").is_empty(), "{page}");
    assert!(fields(&page, "ssl-client-cert").is_empty(), "{page}");
    assert_eq!(https("optional.test", Some(&foreign), &[]).0, 400);
    let (_, page, _) = https("optional.test", Some(&bob), &[]);
    assert_eq!(fields(&page, "ssl-client-verify"), ["SUCCESS"]);
    assert_eq!(fields(&page, "ssl-client-subject-dn"), ["CN=bob,O=Example"]);

    // `optional_no_ca`: an unknown issuer passes, told as FAILED; an expired certificate of
    // the right CA does not (nginx lets only issuer errors through).
    let (code, page, _) = https("noca.test", Some(&foreign), &[]);
    assert_eq!(code, 200, "{page}");
    assert_eq!(
        fields(&page, "ssl-client-verify"),
        ["FAILED:unable to get local issuer certificate"]
    );
    assert_eq!(fields(&page, "ssl-client-subject-dn"), ["CN=eve,O=Example"]);
    assert_eq!(fields(&page, "ssl-client-issuer-dn"), ["CN=stranger-ca"]);
    assert_eq!(https("noca.test", Some(&expired), &[]).0, 400);

    // `off`: nothing asked, the backend told NONE.
    let (code, page, _) = https("off.test", Some(&alice), &[]);
    assert_eq!(code, 200);
    assert_eq!(fields(&page, "ssl-client-verify"), ["NONE"]);

    // auth-tls-error-page: a redirect instead of 400.
    let (code, _, head) = https("errpage.test", Some(&foreign), &[]);
    assert_eq!(code, 302);
    assert_eq!(head_fields(&head, "location"), ["https://login.test/certificate"]);

    // auth-tls-match-cn: a verified certificate with another name is 403.
    assert_eq!(https("cn.test", Some(&alice), &[]).0, 200);
    let (code, body, _) = https("cn.test", Some(&bob), &[]);
    assert_eq!((code, body.as_str()), (403, "client certificate unauthorized\n"));

    // ca.crl: a revoked certificate is refused, the others pass.
    assert_eq!(https("crl.test", Some(&revoked), &[]).0, 400);
    assert_eq!(https("crl.test", Some(&alice), &[]).0, 200, "{}", log());
    // Without a list, the same certificate passes (it is the CA's).
    assert_eq!(https("on.test", Some(&revoked), &[]).0, 200);

    // A Secret that is missing or holds no CA: the host fails closed.
    for host in ["missing.test", "unusable.test"] {
        assert_eq!(https(host, Some(&alice), &[]).0, 503, "{host}");
    }

    // A certificate verified for one host does not admit a request to another: the Host must
    // be the name the connection was made for (421, as nginx).
    let (code, _, _) = https("optional.test", Some(&alice), &["-H", "Host: cn.test"]);
    assert_eq!(code, 421);
    let (code, _, _) = https("plain.test", None, &["-H", "Host: on.test"]);
    assert_eq!(code, 421);
    // To a host without client certificates, another Host is served as usual.
    assert_eq!(https("on.test", Some(&alice), &["-H", "Host: plain.test"]).0, 200);

    // Plain HTTP carries no certificate: `on` refuses it, `optional` passes with NONE.
    let plain = |host: &str| curl(&["-H", &format!("Host: {host}"), &format!("http://{ALB}:8080/")]);
    assert_eq!(plain("on.test").0, 400);
    let (code, page) = plain("optional.test");
    assert_eq!(code, 200);
    assert_eq!(fields(&page, "ssl-client-verify"), ["NONE"]);
    assert_eq!(plain("plain.test").0, 200);

    // auth-url on a host with client certificates: forged fields are replaced on the
    // subrequest as on the proxied request.
    let forged = [
        "-H",
        "ssl-client-verify: SUCCESS",
        "-H",
        "ssl-client-subject-dn: CN=admin,O=Corp",
        "-H",
        "ssl-client-cert: forged",
    ];
    assert_eq!(https("authurl.test", None, &forged).0, 200, "{}", log());
    let seen = auth_service.last();
    assert_eq!(seen.all("ssl-client-verify"), ["NONE"], "{seen:?}");
    assert!(seen.all("ssl-client-subject-dn").is_empty(), "{seen:?}");
    assert!(seen.all("ssl-client-cert").is_empty(), "{seen:?}");
    assert_eq!(https("authurl.test", Some(&alice), &forged).0, 200);
    let seen = auth_service.last();
    assert_eq!(seen.all("ssl-client-verify"), ["SUCCESS"], "{seen:?}");
    assert_eq!(seen.all("ssl-client-subject-dn"), ["CN=alice,O=Example"], "{seen:?}");

    // Aliases and wildcards resolve as routing does.
    assert_eq!(https("alias.wild.test", None, &[]).0, 400, "{}", log());
    assert_eq!(https("alias.wild.test", Some(&alice), &[]).0, 200);
    assert_eq!(https("other.wild.test", None, &[]).0, 200);
    assert_eq!(https("exact.wild.test", None, &[]).0, 200);
    let (code, _, head) = https("redirect.test", None, &[]);
    assert_eq!(code, 308, "{head}");
    assert_eq!(head_fields(&head, "location"), ["https://www.redirect.test:8443"]);
    assert_eq!(https("www.redirect.test", None, &[]).0, 400);

    let log = log();
    assert!(
        log.contains("auth-tls-secret default/no-ca: data.ca.crt is missing"),
        "{log}"
    );
    assert!(log.contains("Secret default/no-such-secret not found"), "{log}");
}
