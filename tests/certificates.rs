//! Certificates nginx serves (Directives > status_alert_certificates, Metrics): every
//! `ssl_certificate` of every server with an SSL listener is read when the configuration is
//! loaded, and its file is re-read while nginx runs, so that a renewal nginx does not serve yet
//! shows. Certificates are made in the test with the `openssl` crate (OpenSSL, as nginx uses
//! it) with chosen expiry dates, RSA and ECDSA, a chain whose intermediate expires first.

use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::rsa::Rsa;
use openssl::x509::{X509Builder, X509NameBuilder, X509};
use serde_json::Value;
use status_alert_testkit::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DAY: i64 = 86_400;

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An RSA or ECDSA key.
fn key(rsa: bool) -> PKey<Private> {
    if rsa {
        PKey::from_rsa(Rsa::generate(2048).unwrap()).unwrap()
    } else {
        let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1).unwrap();
        PKey::from_ec_key(EcKey::generate(&group).unwrap()).unwrap()
    }
}

/// A certificate for `cn` with `key`, signed by `issuer` (self-signed without), expiring at
/// `not_after` (Unix seconds).
fn certificate(
    cn: &str,
    key: &PKey<Private>,
    issuer: Option<(&X509, &PKey<Private>)>,
    not_after: i64,
) -> X509 {
    let mut name = X509NameBuilder::new().unwrap();
    name.append_entry_by_nid(Nid::COMMONNAME, cn).unwrap();
    let name = name.build();
    let mut b = X509Builder::new().unwrap();
    b.set_version(2).unwrap();
    b.set_subject_name(&name).unwrap();
    let (issuer_name, signer) = match issuer {
        Some((c, k)) => (c.subject_name().to_owned().unwrap(), k),
        None => (name.to_owned().unwrap(), key),
    };
    b.set_issuer_name(&issuer_name).unwrap();
    b.set_pubkey(key).unwrap();
    b.set_not_before(&Asn1Time::from_unix(now() - 100 * DAY).unwrap())
        .unwrap();
    b.set_not_after(&Asn1Time::from_unix(not_after).unwrap())
        .unwrap();
    b.sign(signer, MessageDigest::sha256()).unwrap();
    b.build()
}

/// Writes `NAME.pem` (the certificates, in order) and `NAME.key`; returns the .pem's path.
fn write_pair(dir: &Path, name: &str, chain: &[&X509], key: &PKey<Private>) -> PathBuf {
    let pem: Vec<u8> = chain.iter().flat_map(|c| c.to_pem().unwrap()).collect();
    let path = dir.join(format!("{name}.pem"));
    std::fs::write(&path, pem).unwrap();
    std::fs::write(
        dir.join(format!("{name}.key")),
        key.private_key_to_pem_pkcs8().unwrap(),
    )
    .unwrap();
    path
}

/// A leaf for `cn` expiring in `days`, self-signed, written as NAME.pem/.key.
fn leaf(dir: &Path, name: &str, cn: &str, days: i64, rsa: bool) -> (PathBuf, i64) {
    let not_after = now() + days * DAY;
    let k = key(rsa);
    let c = certificate(cn, &k, None, not_after);
    (write_pair(dir, name, &[&c], &k), not_after)
}

/// The http block: NAME `app` (so the module is in use), metrics, and `servers`.
fn http_block(servers: &str) -> String {
    format!(
        r#"
status_alert_interval 1s;
server {{
    listen 127.0.0.1:{{PORT}};
    location / {{ status_alert app; return 200 "ok"; }}
    location = /status_metrics {{ status_alert off; status_metrics; }}
}}
{servers}
"#
    )
}

fn ssl_server(name: &str, certs: &[&Path], extra: &str) -> String {
    let mut s =
        format!("server {{\n    listen 127.0.0.1:{{PORT2}} ssl;\n    server_name {name};\n");
    for c in certs {
        let key = c.with_extension("key");
        s.push_str(&format!(
            "    ssl_certificate {};\n    ssl_certificate_key {};\n",
            c.display(),
            key.display()
        ));
    }
    s.push_str(extra);
    s.push_str("    return 200 \"tls\";\n}\n");
    s
}

/// `nginx_ssl_certificate_expiry_timestamp_seconds` of (server, file, state).
fn expiry(nginx: &Nginx, server: &str, file: &Path, state: &str) -> Option<f64> {
    let file = file.display().to_string();
    metric(
        &prom(nginx),
        "nginx_ssl_certificate_expiry_timestamp_seconds",
        &[("server", server), ("file", &file), ("state", state)],
    )
}

fn json_certificates(nginx: &Nginx) -> Vec<Value> {
    let v = http_get(nginx.port, "/status_metrics?format=json").json();
    v["certificates"].as_array().cloned().unwrap_or_default()
}

#[test]
fn served_certificates_and_their_files_are_in_the_metrics() {
    require_module!();
    let tmp = temp_dir("certs");
    let dir = tmp.path();
    // RSA and ECDSA on one server, each watched.
    let (rsa, rsa_end) = leaf(dir, "rsa", "a.test", 60, true);
    let (ec, ec_end) = leaf(dir, "ec", "a.test", 10, false);
    // A chain whose intermediate expires before the leaf: the chain breaks then.
    let ca_key = key(false);
    let ca_end = now() + 5 * DAY;
    let ca = certificate("Test Intermediate", &ca_key, None, ca_end);
    let leaf_key = key(false);
    let chained = certificate("b.test", &leaf_key, Some((&ca, &ca_key)), now() + 80 * DAY);
    let chain = write_pair(dir, "chain", &[&chained, &ca], &leaf_key);
    let servers = ssl_server("a.test", &[&rsa, &ec], "") + &ssl_server("b.test", &[&chain], "");
    let nginx = Nginx::start(&http_block(&servers), NginxOpts::workers(2));

    for (server, file, end) in [
        ("a.test", &rsa, rsa_end),
        ("a.test", &ec, ec_end),
        ("b.test", &chain, ca_end),
    ] {
        assert_eq!(
            expiry(&nginx, server, file, "served"),
            Some(end as f64),
            "served {server} {}",
            file.display()
        );
        // The helper re-reads the files within seconds of start.
        assert!(
            wait_until(Duration::from_secs(5), || expiry(
                &nginx, server, file, "on_disk"
            ) == Some(end as f64)),
            "on_disk {server} {}: {:?}",
            file.display(),
            expiry(&nginx, server, file, "on_disk")
        );
    }
    let certs = json_certificates(&nginx);
    assert_eq!(certs.len(), 3, "{certs:?}");
    assert!(certs
        .iter()
        .all(|c| c["problem"].is_null() && c["renewed_on_disk_since"].is_null()));
    nginx.assert_log_clean();
}

#[test]
fn a_renewal_on_disk_shows_until_a_reload_serves_it() {
    require_module!();
    let tmp = temp_dir("renew");
    let dir = tmp.path();
    let (file, old_end) = leaf(dir, "site", "r.test", 5, false);
    let nginx = Nginx::start(
        &http_block(&ssl_server("r.test", &[&file], "")),
        NginxOpts::workers(1),
    );
    assert_eq!(
        expiry(&nginx, "r.test", &file, "served"),
        Some(old_end as f64)
    );

    // certbot renews the file; nobody reloads nginx.
    std::thread::sleep(Duration::from_millis(1100));
    let (_, new_end) = leaf(dir, "site", "r.test", 90, false);
    assert!(
        wait_until(Duration::from_secs(5), || expiry(
            &nginx, "r.test", &file, "on_disk"
        ) == Some(new_end as f64)),
        "the renewed file was not seen: {:?}",
        expiry(&nginx, "r.test", &file, "on_disk")
    );
    assert_eq!(
        expiry(&nginx, "r.test", &file, "served"),
        Some(old_end as f64)
    );
    let c = &json_certificates(&nginx)[0];
    assert!(c["renewed_on_disk_since"].as_u64().is_some(), "{c}");

    nginx.reload();
    assert!(
        wait_until(Duration::from_secs(5), || expiry(
            &nginx, "r.test", &file, "served"
        ) == Some(new_end as f64)),
        "a reload serves the renewed certificate"
    );
    assert!(
        wait_until(Duration::from_secs(5), || json_certificates(&nginx)[0]
            ["renewed_on_disk_since"]
            .is_null()),
        "{:?}",
        json_certificates(&nginx)
    );
}

#[test]
fn broken_files_are_reported_and_nginx_keeps_serving() {
    require_module!();
    let tmp = temp_dir("broken");
    let dir = tmp.path();
    let (file, end) = leaf(dir, "site", "x.test", 30, true);
    let nginx = Nginx::start(
        &http_block(&ssl_server("x.test", &[&file], "")),
        NginxOpts::workers(1),
    );
    assert!(wait_until(Duration::from_secs(5), || expiry(
        &nginx, "x.test", &file, "on_disk"
    ) == Some(end as f64)));
    let pem = std::fs::read(&file).unwrap();
    let problem = |nginx: &Nginx| {
        json_certificates(nginx)[0]["problem"]
            .as_str()
            .map(str::to_string)
    };
    // Truncated, then a directory in its place.
    std::fs::write(&file, &pem[..pem.len() / 2]).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || problem(&nginx)
            .is_some_and(|p| p.starts_with("no certificate in"))),
        "{:?}",
        problem(&nginx)
    );
    std::fs::remove_file(&file).unwrap();
    std::fs::create_dir(&file).unwrap();
    assert!(
        wait_until(Duration::from_secs(5), || problem(&nginx)
            .is_some_and(|p| p.starts_with("cannot read"))),
        "{:?}",
        problem(&nginx)
    );
    assert_eq!(expiry(&nginx, "x.test", &file, "on_disk"), None);
    assert_eq!(expiry(&nginx, "x.test", &file, "served"), Some(end as f64));
    assert_eq!(http_get(nginx.port, "/").status, 200);
}

#[test]
fn variables_are_listed_and_off_turns_watching_off() {
    require_module!();
    let tmp = temp_dir("vars");
    let dir = tmp.path();
    let (file, _) = leaf(dir, "v", "v.test", 30, false);
    let by_name = format!(
        "server {{\n    listen 127.0.0.1:{{PORT2}} ssl;\n    server_name v.test;\n    \
         ssl_certificate {}/$ssl_server_name.pem;\n    ssl_certificate_key {}/v.key;\n    \
         return 200;\n}}\n",
        dir.display(),
        dir.display()
    );
    let off = format!(
        "server {{\n    listen 127.0.0.1:{{PORT3}} ssl;\n    server_name off.test;\n    \
         status_alert_certificates off;\n    ssl_certificate {};\n    ssl_certificate_key {};\n    \
         return 200;\n}}\n",
        file.display(),
        file.with_extension("key").display()
    );
    let block = http_block(&(by_name + &off));
    let nginx = Nginx::start(&block, NginxOpts::workers(1));
    // Listed once each time the configuration is read: a reload's reading goes to error.log.
    nginx.reload();
    let listed = "$ssl_server_name.pem\" of server \"v.test\" is chosen through variables and \
                  is not checked";
    let log = nginx.error_log();
    let found: Vec<&str> = log.lines().filter(|l| l.contains(listed)).collect();
    assert!(found.len() == 1 && found[0].contains("[notice]"), "{log}");
    assert!(
        json_certificates(&nginx).is_empty(),
        "{:?}",
        json_certificates(&nginx)
    );
    let text = http_get(nginx.port, "/status_metrics").text();
    assert!(
        !text.contains("nginx_ssl_certificate_expiry_timestamp_seconds"),
        "{text}"
    );
}

#[test]
fn bad_thresholds_fail_nginx_t() {
    require_module!();
    for (args, want) in [
        (
            "warn=3d",
            "status_alert_certificates: crit (default 7d) must be shorter than warn=3d",
        ),
        ("warn=soon", "invalid warn value \"soon\""),
        ("days=3", "invalid parameter \"days=3\""),
    ] {
        let block = format!("status_alert_certificates {args};\n{}", http_block(""));
        let (ok, out) = Nginx::test_config(&block, NginxOpts::default());
        let emerg = out.lines().find(|l| l.contains("[emerg]")).unwrap_or("");
        assert!(
            !ok && emerg.contains(want) && emerg.contains("nginx.conf:"),
            "{args}: {out}"
        );
    }
}

/// `YYYY-MM-DD` of Unix seconds, UTC (by date(1), independent of the module's calendar code).
fn date_of(unix: i64) -> String {
    let out = std::process::Command::new("date")
        .args(["-u", "-d", &format!("@{unix}"), "+%F"])
        .output()
        .expect("run date");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// The http block with a Discord-style webhook and an Alertmanager.
fn alerting_block(webhook: &str, alertmanager: &str, servers: &str) -> String {
    format!(
        "status_alert_webhook {webhook};\nstatus_alert_alertmanager {alertmanager};\n{}",
        http_block(servers)
    )
}

fn count(titles: &[String], prefix: &str) -> usize {
    titles.iter().filter(|t| t.starts_with(prefix)).count()
}

#[test]
fn certificate_alerts_fire_once_per_level_tell_of_a_renewal_and_resolve_on_reload() {
    require_module!();
    let tmp = temp_dir("cert-alerts");
    let dir = tmp.path();
    let (rsa, rsa_end) = leaf(dir, "rsa", "a.test", 10, true);
    let (ec, ec_end) = leaf(dir, "ec", "a.test", 3, false);
    // Already expired two days ago (nginx serves it all the same).
    let (old, old_end) = leaf(dir, "old", "b.test", -2, false);
    let rx = WebhookReceiver::start();
    let am = WebhookReceiver::start();
    let servers = ssl_server("a.test", &[&rsa, &ec], "") + &ssl_server("b.test", &[&old], "");
    let block = alerting_block(&rx.url(), &am.url(), &servers);
    let nginx = Nginx::start(&block, NginxOpts::workers(2));

    let warning = format!(
        "WARNING cert a.test: expires in 9 days ({})",
        date_of(rsa_end)
    );
    let critical = format!(
        "CRITICAL cert a.test: expires in 2 days ({})",
        date_of(ec_end)
    );
    let expired = format!(
        "CRITICAL cert b.test: expired 2 days ago ({})",
        date_of(old_end)
    );
    assert!(
        wait_until(Duration::from_secs(8), || {
            let t = rx.titles();
            t.contains(&warning) && t.contains(&critical) && t.contains(&expired)
        }),
        "titles {:?}, want {warning:?}, {critical:?} and {expired:?}",
        rx.titles()
    );
    // Once each: no repeat within a day.
    std::thread::sleep(Duration::from_secs(3));
    let titles = rx.all_titles();
    assert_eq!(count(&titles, "WARNING cert"), 1, "{titles:?}");
    assert_eq!(count(&titles, "CRITICAL cert a.test"), 1, "{titles:?}");
    assert_eq!(count(&titles, "CRITICAL cert b.test"), 1, "{titles:?}");

    // certbot renews the ECDSA file; nginx is not reloaded: said at once, still critical.
    let (_, new_end) = leaf(dir, "ec", "a.test", 90, false);
    let renewed = |rx: &WebhookReceiver| {
        rx.messages().iter().any(|m| {
            m.to_string().contains("reload nginx to serve it")
                && m.to_string().contains("(still firing)")
        })
    };
    assert!(
        wait_until(Duration::from_secs(8), || renewed(&rx)),
        "no renewal message: {:?}",
        rx.messages()
    );
    let titles = rx.all_titles();
    assert_eq!(
        count(&titles, "CRITICAL cert a.test"),
        2,
        "the renewal once: {titles:?}"
    );

    // The reload serves it: RESOLVED once; the RSA certificate's warning is not repeated.
    nginx.reload();
    let resolved = format!(
        "RESOLVED cert a.test: expires in 89 days ({})",
        date_of(new_end)
    );
    assert!(
        wait_until(Duration::from_secs(8), || rx.titles().contains(&resolved)),
        "titles {:?}, want {resolved:?}",
        rx.titles()
    );
    std::thread::sleep(Duration::from_secs(3));
    let titles = rx.all_titles();
    assert_eq!(count(&titles, "RESOLVED cert"), 1, "{titles:?}");
    assert_eq!(count(&titles, "WARNING cert"), 1, "{titles:?}");
    assert!(rx.violations().is_empty(), "{:?}", rx.violations());

    // Alertmanager heard of both, with their labels.
    let bodies: Vec<Value> = am
        .requests()
        .iter()
        .filter_map(|r| serde_json::from_slice(&r.body).ok())
        .collect();
    let alerts: Vec<&Value> = bodies
        .iter()
        .flat_map(|b| b.as_array().into_iter().flatten())
        .collect();
    for (file, severity) in [(&rsa, "warning"), (&ec, "critical")] {
        let file = file.display().to_string();
        assert!(
            alerts.iter().any(|a| {
                let l = &a["labels"];
                l["alertname"] == "NginxCertificateExpiry"
                    && l["server"] == "a.test"
                    && l["file"] == file.as_str()
                    && l["severity"] == severity
            }),
            "no {severity} alert for {file}: {bodies:?}"
        );
    }
}

#[test]
fn an_https_probe_targets_certificate_is_watched() {
    require_module!();
    let tmp = temp_dir("probe-cert");
    let dir = tmp.path();
    let (file, end) = leaf(dir, "p", "localhost", 5, false);
    let rx = WebhookReceiver::start();
    // nginx probes its own TLS listener, a self-signed certificate: tls_verify=off, as for an
    // internal service; its expiry still matters.
    let servers = format!(
        "server {{\n    listen 127.0.0.1:{{PORT3}};\n    location / {{\n        status_alert probed;\n        \
         status_alert_probe https://127.0.0.1:{{PORT2}}/ interval=1s timeout=500ms tls_verify=off;\n        \
         return 200;\n    }}\n}}\n{}",
        ssl_server("p.test", &[&file], "status_alert_certificates off;\n")
    );
    let block = format!(
        "status_alert_webhook {};\n{}",
        rx.url(),
        http_block(&servers)
    );
    let nginx = Nginx::start(&block, NginxOpts::workers(1));
    let target = format!("https://127.0.0.1:{}/", nginx.ports[1]);
    assert!(
        wait_until(Duration::from_secs(6), || metric(
            &prom(&nginx),
            "nginx_probe_certificate_expiry_timestamp_seconds",
            &[("probe", "probed"), ("target", &target)]
        ) == Some(end as f64)),
        "{}",
        http_get(nginx.port, "/status_metrics").text()
    );
    let want = format!(
        "CRITICAL cert probed {target}: expires in 4 days ({})",
        date_of(end)
    );
    assert!(
        wait_until(Duration::from_secs(6), || rx.titles().contains(&want)),
        "titles {:?}, want {want:?}",
        rx.titles()
    );
    // The server's own certificate watch is off there: no served-certificate alert.
    assert_eq!(count(&rx.all_titles(), "CRITICAL cert p.test"), 0);
}
