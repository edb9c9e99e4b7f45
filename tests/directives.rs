//! The directive contract of the README (Directives), checked with the real `nginx -t`: every
//! directive has valid forms that pass, and every invalid form fails with an `[emerg]` line that
//! names the directive, the offending value and the right `nginx.conf:<line>`. Plus `nginx -T`
//! keeping a `file=` webhook token out of the dump, and one running nginx showing that
//! `status_alert off` and inheritance decide what is counted.

use status_alert_testkit::*;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// `server { listen ...; BODY }`.
fn server(body: &str) -> String {
    format!("server {{\n    listen 127.0.0.1:{{PORT}};\n{body}\n}}")
}

/// A server whose `location /` holds `body`.
fn in_location(body: &str) -> String {
    server(&format!(
        "    location / {{\n        {body}\n        return 204;\n    }}"
    ))
}

/// Line number in the generated nginx.conf of the one line containing `needle`.
fn conf_line(opts: &NginxOpts, block: &str, needle: &str) -> usize {
    let (dir, ports) = (Path::new("/x"), [0; NGINX_PORTS]);
    let conf = render_config(dir, block, opts, &ports);
    let rendered_needle = substitute(needle, dir, &ports);
    let hits: Vec<usize> = conf
        .lines()
        .enumerate()
        .filter(|(_, l)| l.contains(&rendered_needle))
        .map(|(i, _)| i + 1)
        .collect();
    assert_eq!(
        hits.len(),
        1,
        "test bug: {needle:?} must be on exactly one line of nginx.conf:\n{conf}"
    );
    // Cross-check against the harness's own arithmetic when the line is in the http block.
    if let Some(i) = block.lines().position(|l| l.contains(needle)) {
        assert_eq!(
            hits[0],
            http_block_line(opts, i + 1),
            "line arithmetic disagrees"
        );
    }
    hits[0]
}

fn numbered(text: &str) -> String {
    text.lines()
        .enumerate()
        .map(|(i, l)| format!("{:4} | {l}\n", i + 1))
        .collect()
}

/// Checks one rejected configuration: nginx failed, and its first `[emerg]` line contains
/// every string of `wants` and ends with `nginx.conf:<line>`. Returns a description of what is
/// wrong, if anything.
fn check_rejected(ok: bool, out: &str, line: usize, wants: &[&str]) -> Result<(), String> {
    if ok {
        return Err(format!("nginx -t accepted it:\n{out}"));
    }
    let Some(emerg) = out.lines().find(|l| l.contains("[emerg]")) else {
        return Err(format!("no [emerg] line in:\n{out}"));
    };
    let missing: Vec<&&str> = wants.iter().filter(|w| !emerg.contains(**w)).collect();
    if !missing.is_empty() {
        return Err(format!("{missing:?} missing from the [emerg] line:\n{out}"));
    }
    let place = format!("nginx.conf:{line}");
    if !emerg.ends_with(&place) {
        return Err(format!("the [emerg] line should end with {place}:\n{out}"));
    }
    Ok(())
}

/// `nginx -t` must reject `block`; the error belongs to the line containing `at`, and names
/// `directive` and everything in `wants`. Returns nginx's output.
fn expect_rejected_with(
    opts: &NginxOpts,
    block: &str,
    at: &str,
    directive: &str,
    wants: &[&str],
) -> Result<String, String> {
    let line = conf_line(opts, block, at);
    let (ok, out) = Nginx::test_config(block, opts.clone());
    let mut all = vec![directive];
    all.extend_from_slice(wants);
    check_rejected(ok, &out, line, &all)
        .map(|()| out)
        .map_err(|e| format!("{e}\n--- http block ---\n{}", numbered(block)))
}

/// [`expect_rejected_with`] with default options; the directive is the first word of `at`.
fn expect_rejected(block: &str, at: &str, wants: &[&str]) -> Result<String, String> {
    let directive = at
        .split(|c: char| c.is_whitespace() || c == ';')
        .next()
        .expect("empty `at`");
    expect_rejected_with(&NginxOpts::default(), block, at, directive, wants)
}

fn expect_accepted(block: &str) -> Result<(), String> {
    let (ok, out) = Nginx::test_config(block, NginxOpts::default());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "nginx -t rejected a valid configuration:\n{out}\n--- http block ---\n{}",
            numbered(block)
        ))
    }
}

/// `nginx -t` must accept every (label, http block); fails once, listing the ones it rejected.
fn report_accepted<'a>(cases: impl IntoIterator<Item = (&'a str, String)>) {
    report(
        cases
            .into_iter()
            .map(|(label, block)| (label.to_string(), expect_accepted(&block)))
            .collect(),
    );
}

/// Results of (label, line, wants) cases: the http block `place(line)` must be rejected at
/// `line`, naming its directive and everything in `wants`.
fn rejected_lines(
    cases: Vec<(&str, &str, Vec<&str>)>,
    place: impl Fn(&str) -> String,
) -> Vec<(String, Result<(), String>)> {
    cases
        .into_iter()
        .map(|(label, line, wants)| {
            let block = place(line);
            (
                label.to_string(),
                expect_rejected(&block, line, &wants).map(drop),
            )
        })
        .collect()
}

/// Runs all `cases` (label, result) and fails once, listing every failed case.
fn report(cases: Vec<(String, Result<(), String>)>) {
    let total = cases.len();
    let failed: Vec<String> = cases
        .into_iter()
        .filter_map(|(label, r)| r.err().map(|e| format!("=== {label}: {e}")))
        .collect();
    assert!(
        failed.is_empty(),
        "{} of {total} cases failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}

/// A temp dir of our own (for files that must exist before nginx reads its configuration),
/// removed on drop.
struct OwnDir(PathBuf);

impl OwnDir {
    fn new() -> OwnDir {
        let dir = unique_temp_dir("directives");
        prepare_dir(&dir);
        OwnDir(dir)
    }

    /// The harness's nginx.conf for `block`, with `{DIR}` being this dir.
    fn render(&self, block: &str, opts: &NginxOpts) -> String {
        render_config(&self.0, block, opts, &free_ports(NGINX_PORTS))
    }

    /// Writes `conf` as nginx.conf and runs `nginx <flag> -p DIR -c DIR/nginx.conf`; returns
    /// (success, stdout, stderr). `-t` and `-T` never daemonize, so pipes are fine.
    fn run(&self, conf: &str, flag: &str) -> (bool, String, String) {
        let conf_path = self.0.join("nginx.conf");
        fs::write(&conf_path, conf).expect("write nginx.conf");
        let out = nginx_command_in(&self.0, &[flag])
            .stdin(Stdio::null())
            .output()
            .expect("run nginx");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

impl Drop for OwnDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

const TOKEN: &str = "filetoken-Zq81xK3vP0wsecret";

// ---------------------------------------------------------------------------------------------
// status_alert
// ---------------------------------------------------------------------------------------------

#[test]
fn status_alert_valid_forms() {
    require_module!();
    let cases = [
        (
            "all parameters",
            in_location(
                "status_alert be warn=2% crit=20.5% window=10m min_requests=50 repeat=1h \
                 link=https://logs.example.com/be runbook=http://wiki.example.com/be;",
            ),
        ),
        (
            "warn=off",
            in_location("status_alert be warn=off crit=50%;"),
        ),
        ("repeat=off", in_location("status_alert be repeat=off;")),
        (
            "boundaries crit=100% min_requests=0 window=24h",
            in_location("status_alert be warn=99.5% crit=100% min_requests=0 window=24h;"),
        ),
        (
            "window exactly 2 x the default interval",
            in_location("status_alert be window=20s;"),
        ),
        ("status_alert off", in_location("status_alert off;")),
        (
            "NAME with . _ - /",
            in_location("status_alert shop.v2/api_backend-1;"),
        ),
        (
            "NAME of 64 bytes",
            in_location(&format!("status_alert {};", "n".repeat(64))),
        ),
        (
            "same NAME, identical parameters, two locations",
            server(
                "    location /a { status_alert be crit=20% window=1m; return 204; }\n\
                 \x20   location /b { status_alert be crit=20% window=1m; return 204; }",
            ),
        ),
        (
            "http level, inherited by server and location",
            format!("status_alert be;\n{}", in_location("return 200;")),
        ),
        (
            "server level, overridden and switched off in locations",
            server(
                "    status_alert srv;\n\
                 \x20   location /a { status_alert api; return 204; }\n\
                 \x20   location /b { status_alert off; return 204; }\n\
                 \x20   location /c { return 204; }",
            ),
        ),
    ];
    report_accepted(cases);
}

#[test]
fn status_alert_bad_parameters() {
    require_module!();
    let long = format!("status_alert {};", "n".repeat(65));
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        ("unknown key", "status_alert be foo=1;", vec!["foo=1"]),
        ("bare word", "status_alert be loud;", vec!["loud"]),
        (
            "duplicate",
            "status_alert be warn=1% warn=2%;",
            vec!["duplicate", "warn"],
        ),
        (
            "warn=abc",
            "status_alert be warn=abc;",
            vec!["warn", "\"abc\""],
        ),
        (
            "warn=0%",
            "status_alert be warn=0%;",
            vec!["warn", "\"0%\""],
        ),
        (
            "warn=-5%",
            "status_alert be warn=-5%;",
            vec!["warn", "\"-5%\""],
        ),
        (
            "crit=150%",
            "status_alert be crit=150%;",
            vec!["crit", "\"150%\""],
        ),
        (
            "crit=abc",
            "status_alert be crit=abc;",
            vec!["crit", "\"abc\""],
        ),
        (
            "window=0s",
            "status_alert be window=0s;",
            vec!["window", "\"0s\""],
        ),
        (
            "window=25h",
            "status_alert be window=25h;",
            vec!["window", "\"25h\""],
        ),
        (
            "window=abc",
            "status_alert be window=abc;",
            vec!["window", "\"abc\""],
        ),
        (
            "min_requests=-1",
            "status_alert be min_requests=-1;",
            vec!["min_requests", "\"-1\""],
        ),
        (
            "min_requests=many",
            "status_alert be min_requests=many;",
            vec!["min_requests", "\"many\""],
        ),
        (
            "repeat=never",
            "status_alert be repeat=never;",
            vec!["repeat", "\"never\""],
        ),
        (
            "repeat=0s",
            "status_alert be repeat=0s;",
            vec!["repeat", "\"0s\""],
        ),
        (
            "link=ftp://",
            "status_alert be link=ftp://logs.example.com/be;",
            vec!["link", "\"ftp://logs.example.com/be\""],
        ),
        (
            "runbook without scheme",
            "status_alert be runbook=wiki.example.com/be;",
            vec!["runbook", "\"wiki.example.com/be\""],
        ),
        (
            "warn = crit",
            "status_alert be warn=10% crit=10%;",
            vec!["warn=10%", "crit=10%"],
        ),
        (
            "warn > crit",
            "status_alert be warn=20% crit=15%;",
            vec!["warn=20%", "crit=15%"],
        ),
        (
            "warn above the default crit",
            "status_alert be warn=20%;",
            vec!["warn=20%", "crit=10%"],
        ),
        (
            "NAME with a space",
            "status_alert \"a b\";",
            vec!["\"a b\""],
        ),
        ("NAME with a quote", "status_alert 'a\"b';", vec!["a\"b"]),
        (
            "NAME with a semicolon",
            "status_alert \"a;b\";",
            vec!["a;b"],
        ),
        ("NAME of 65 bytes", &long, vec![&long[13..78]]),
    ];
    report(rejected_lines(cases, in_location));
}

#[test]
fn status_alert_same_name_with_different_parameters() {
    require_module!();
    let opts = NginxOpts::default();
    let block = server(
        "    location /a {\n        status_alert be crit=20%;\n        return 204;\n    }\n\
         \x20   location /b {\n        status_alert be crit=30%;\n        return 204;\n    }",
    );
    let first = conf_line(&opts, &block, "crit=20%");
    let out =
        expect_rejected(&block, "status_alert be crit=30%", &["\"be\"", "different"]).unwrap();
    assert!(
        out.contains(&format!("nginx.conf:{first} ")),
        "the error should name the first place, nginx.conf:{first}:\n{out}"
    );

    // Also across levels: http-level NAME vs a location redefining it.
    let block = format!(
        "status_alert be window=1m;\n{}",
        in_location("status_alert be window=2m;")
    );
    let first = conf_line(&opts, &block, "window=1m");
    let out = expect_rejected(&block, "status_alert be window=2m", &["\"be\""]).unwrap();
    assert!(out.contains(&format!("nginx.conf:{first} ")), "{out}");
}

#[test]
fn status_alert_twice_in_one_context() {
    require_module!();
    let cases = [
        ("same NAME", "status_alert be;", "status_alert be; # second"),
        ("other NAME", "status_alert be;", "status_alert other;"),
        ("NAME then off", "status_alert be;", "status_alert off;"),
    ];
    report(
        cases
            .into_iter()
            .map(|(label, first, second)| {
                let block = in_location(&format!("{first}\n        {second}"));
                (
                    label.to_string(),
                    expect_rejected(&block, second, &["duplicate"]).map(drop),
                )
            })
            .collect(),
    );
    // At server level too.
    let block = server("    status_alert be;\n    status_alert be2;");
    expect_rejected(&block, "status_alert be2;", &["duplicate"]).unwrap();
}

#[test]
fn status_alert_window_below_twice_the_interval() {
    require_module!();
    let cases = [
        (
            "explicit interval",
            format!(
                "status_alert_interval 10s;\n{}",
                in_location("status_alert be window=15s;")
            ),
            "status_alert be",
            vec!["\"be\"", "window", "status_alert_interval"],
        ),
        (
            "default interval (10s)",
            in_location("status_alert be window=19s;"),
            "status_alert be",
            vec!["\"be\"", "window", "status_alert_interval"],
        ),
        (
            "default window (5m) vs interval 3m",
            format!(
                "status_alert_interval 3m;\n{}",
                in_location("status_alert be;")
            ),
            "status_alert be",
            vec!["\"be\"", "window", "status_alert_interval"],
        ),
        (
            "interval written after the NAME",
            format!(
                "{}\nstatus_alert_interval 1m;",
                in_location("status_alert late window=90s;")
            ),
            "status_alert late",
            vec!["\"late\"", "window", "status_alert_interval"],
        ),
    ];
    report(
        cases
            .into_iter()
            .map(|(label, block, at, wants)| {
                let r =
                    expect_rejected_with(&NginxOpts::default(), &block, at, "status_alert", &wants);
                (label.to_string(), r.map(drop))
            })
            .collect(),
    );
}

#[test]
fn status_alert_in_wrong_contexts() {
    require_module!();
    let not_allowed = ["\"status_alert\"", "not allowed here"];
    // Main level.
    let opts = NginxOpts {
        extra_main: "status_alert be;\n".into(),
        ..NginxOpts::default()
    };
    let block = in_location("return 204;");
    let r = expect_rejected_with(
        &opts,
        &block,
        "status_alert be;",
        "status_alert",
        &not_allowed,
    );
    let mut results = vec![("main level".to_string(), r.map(drop))];

    // Upstream block.
    let block = format!(
        "upstream u {{\n    server 127.0.0.1:1;\n    status_alert be;\n}}\n{}",
        in_location("return 204;")
    );
    results.push((
        "upstream".to_string(),
        expect_rejected(&block, "status_alert be;", &not_allowed[1..]).map(drop),
    ));

    // `if` inside a server.
    let block = server("    if ($arg_x) {\n        status_alert be;\n    }");
    results.push((
        "server if".to_string(),
        expect_rejected(&block, "status_alert be;", &not_allowed[1..]).map(drop),
    ));

    // events { }: the harness writes that block itself, so edit the rendered config.
    let dir = OwnDir::new();
    let conf = dir.render(&in_location("return 204;"), &NginxOpts::default());
    let conf = conf.replacen(
        "    worker_connections 1024;\n",
        "    worker_connections 1024;\n    status_alert be;\n",
        1,
    );
    let line = conf
        .lines()
        .position(|l| l.contains("status_alert be;"))
        .expect("inserted line")
        + 1;
    let (ok, stdout, stderr) = dir.run(&conf, "-t");
    results.push((
        "events".to_string(),
        check_rejected(ok, &(stderr + &stdout), line, &not_allowed),
    ));
    report(results);
}

// ---------------------------------------------------------------------------------------------
// status_alert_probe
// ---------------------------------------------------------------------------------------------

#[test]
fn probe_valid_forms() {
    require_module!();
    let probe = "status_alert_probe http://127.0.0.1:9/health;";
    let cases = [
        (
            "location with status_alert NAME before the probe",
            in_location(&format!("status_alert be;\n        {probe}")),
        ),
        (
            "status_alert NAME after the probe in the same location",
            in_location(&format!("{probe}\n        status_alert be;")),
        ),
        (
            "NAME inherited from the server level",
            server(&format!(
                "    status_alert srv;\n    location / {{\n        {probe}\n        return 204;\n    }}"
            )),
        ),
        (
            "NAME inherited from the http level",
            format!("status_alert top;\n{}", in_location(probe)),
        ),
        (
            "explicit name= in a location without status_alert",
            in_location("status_alert_probe http://127.0.0.1:9/ name=other;"),
        ),
        (
            "server level with name=",
            server(
                "    status_alert_probe http://127.0.0.1:9/health name=be;\n\
                 \x20   location / { return 204; }",
            ),
        ),
        (
            "http level with name=",
            format!(
                "status_alert_probe http://127.0.0.1:9/health name=be;\n{}",
                in_location("return 204;")
            ),
        ),
        (
            "tcp host:port",
            in_location("status_alert_probe tcp://127.0.0.1:5432 name=db interval=5s timeout=2s;"),
        ),
        (
            "tcp IPv6",
            in_location("status_alert_probe tcp://[::1]:6379 name=cache;"),
        ),
        (
            "two targets under one NAME",
            in_location(
                "status_alert be;\n        status_alert_probe http://127.0.0.1:9/a;\n        \
                 status_alert_probe http://127.0.0.1:9/b;",
            ),
        ),
    ];
    report_accepted(cases);
}

/// An https probe speaks TLS with nginx's OpenSSL: an nginx built with SSL accepts it, one
/// built without (a plain ./configure) refuses it at `nginx -t`, naming the file and line.
#[test]
fn https_probes_need_nginx_with_ssl() {
    require_module!();
    let url_probe = "status_alert_probe https://user:pw@localhost:8443/ready?deep=1 name=be \
                     interval=10s timeout=500ms fails=3 passes=2 expect=200,204,300-399 \
                     tls_verify=off;";
    let upstream_probe = "status_alert_probe upstream=api scheme=https uri=/health;";
    let with_upstream = |line: &str| {
        format!(
            "upstream api {{ server 127.0.0.1:9; }}\n{}",
            in_location(&format!("status_alert api;\n        {line}"))
        )
    };
    if nginx_with_ssl().is_ok() {
        report_accepted([
            (
                "https with tls_verify=off and every parameter",
                in_location(url_probe),
            ),
            (
                "upstream probe with scheme=https",
                with_upstream(upstream_probe),
            ),
        ]);
        return;
    }
    let wants = vec!["https probes need nginx built with SSL (./configure --with-http_ssl_module)"];
    let mut cases = rejected_lines(
        vec![("https URL probe", url_probe, wants.clone())],
        in_location,
    );
    cases.extend(rejected_lines(
        vec![("upstream probe with scheme=https", upstream_probe, wants)],
        with_upstream,
    ));
    report(cases);
}

#[test]
fn probe_bad_parameters() {
    require_module!();
    // All inside a location that has a NAME, so only the parameter itself is wrong.
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "unknown scheme",
            "status_alert_probe ftp://files.example.com/health;",
            vec!["ftp://files.example.com/health", "scheme"],
        ),
        (
            "no scheme",
            "status_alert_probe 127.0.0.1:9/health;",
            vec!["127.0.0.1:9/health"],
        ),
        (
            "unknown parameter",
            "status_alert_probe http://127.0.0.1:9/ retries=3;",
            vec!["retries=3"],
        ),
        (
            "duplicate parameter",
            "status_alert_probe http://127.0.0.1:9/ fails=2 fails=3;",
            vec!["duplicate", "fails"],
        ),
        (
            "fails=0",
            "status_alert_probe http://127.0.0.1:9/ fails=0;",
            vec!["fails", "\"0\""],
        ),
        (
            "passes=0",
            "status_alert_probe http://127.0.0.1:9/ passes=0;",
            vec!["passes", "\"0\""],
        ),
        (
            "timeout equal to interval",
            "status_alert_probe http://127.0.0.1:9/ interval=5s timeout=5s;",
            vec!["timeout=5s must be below interval=5s"],
        ),
        (
            "timeout above the default interval (60s)",
            "status_alert_probe http://127.0.0.1:9/ timeout=90s;",
            vec!["timeout=90s must be below interval (default 60s)"],
        ),
        (
            "interval below the default timeout (5s)",
            "status_alert_probe http://127.0.0.1:9/ interval=3s;",
            vec!["timeout (default 5s) must be below interval=3s"],
        ),
        (
            "interval=abc",
            "status_alert_probe http://127.0.0.1:9/ interval=abc;",
            vec!["interval", "\"abc\""],
        ),
        (
            "expect=2xx",
            "status_alert_probe http://127.0.0.1:9/ expect=2xx;",
            vec!["expect", "\"2xx\""],
        ),
        (
            "expect=300-200",
            "status_alert_probe http://127.0.0.1:9/ expect=300-200;",
            vec!["expect", "\"300-200\""],
        ),
        (
            "tcp:// without port",
            "status_alert_probe tcp://db.internal;",
            vec!["tcp://db.internal", "port"],
        ),
        (
            "tls_verify=maybe",
            "status_alert_probe https://127.0.0.1:9/ tls_verify=maybe;",
            vec!["tls_verify", "\"maybe\""],
        ),
        (
            "expect= on tcp://",
            "status_alert_probe tcp://127.0.0.1:5432 expect=200;",
            vec!["expect="],
        ),
        (
            "bad name=",
            "status_alert_probe http://127.0.0.1:9/ \"name=a b\";",
            vec!["\"a b\""],
        ),
    ];
    report(rejected_lines(cases, |line| {
        in_location(&format!("status_alert be;\n        {line}"))
    }));
}

#[test]
fn probe_url_credentials_stay_out_of_errors() {
    require_module!();
    let line = "status_alert_probe ftp://probeuser:probesecret99@files.example.com/ name=be;";
    let block = in_location(line);
    let out = expect_rejected(&block, line, &["ftp://", "files.example.com"]).unwrap();
    assert!(!out.contains("probesecret99"), "password leaked:\n{out}");
}

#[test]
fn probes_differing_only_in_credentials_are_one_target() {
    require_module!();
    // They would share one metric series (promtool rejects that) and one slot.
    let second = "status_alert_probe http://b:two@127.0.0.1:9/health;";
    let block = in_location(&format!(
        "status_alert be;\n        status_alert_probe http://a:one@127.0.0.1:9/health;\n        \
         {second}"
    ));
    let out = expect_rejected(
        &block,
        second,
        &["already probes", "http://127.0.0.1:9/health"],
    )
    .unwrap();
    assert!(!out.contains("one@") && !out.contains("two@"), "{out}");
}

#[test]
fn webhook_url_credentials_stay_out_of_errors() {
    require_module!();
    let line = "status_alert_webhook ftp://hookuser:hooksecret77@hooks.example.com/x;";
    let (ok, out) = Nginx::test_config(&format!("{line}\n"), NginxOpts::default());
    assert!(!ok, "{out}");
    assert!(out.contains("ftp://***@hooks.example"), "{out}");
    assert!(
        !out.contains("hooksecret77") && !out.contains("hookuser"),
        "{out}"
    );
}

#[test]
fn probe_without_a_name() {
    require_module!();
    let probe = "status_alert_probe http://127.0.0.1:9/health;";
    let cases = [
        (
            "http level",
            format!("{probe}\n{}", in_location("return 204;")),
        ),
        (
            "server level",
            server(&format!("    {probe}\n    location / {{ return 204; }}")),
        ),
        (
            "server level, even with status_alert NAME there",
            server(&format!(
                "    status_alert srv;\n    {probe}\n    location / {{ return 204; }}"
            )),
        ),
        ("location with no NAME in scope", in_location(probe)),
        (
            "location with status_alert off under a server NAME",
            server(&format!(
                "    status_alert srv;\n    location / {{\n        status_alert off;\n        \
                 {probe}\n        return 204;\n    }}"
            )),
        ),
    ];
    report(
        cases
            .into_iter()
            .map(|(label, block)| {
                let r = expect_rejected(&block, probe, &["name="]).map(drop);
                (label.to_string(), r)
            })
            .collect(),
    );
}

#[test]
fn duplicate_named_probe() {
    require_module!();
    let opts = NginxOpts::default();
    let block = format!(
        "status_alert_probe http://127.0.0.1:9/health name=be;\n\
         status_alert_probe http://127.0.0.1:9/health name=be; # dup\n{}",
        in_location("return 204;")
    );
    let first = http_block_line(&opts, 1);
    let wants = ["\"be\"", "http://127.0.0.1:9/health"];
    let out = expect_rejected_with(&opts, &block, "# dup", "status_alert_probe", &wants).unwrap();
    assert!(out.contains(&format!("nginx.conf:{first} ")), "{out}");
}

#[test]
fn duplicate_location_probe_names_its_own_line() {
    require_module!();
    // Both locations inherit NAME srv and probe the same target without name=, so the clash is
    // only found when the locations are merged.
    let opts = NginxOpts::default();
    let block = server(
        "    status_alert srv;\n\
         \x20   location /a { status_alert_probe http://127.0.0.1:9/health; return 204; }\n\
         \x20   location /b { status_alert_probe http://127.0.0.1:9/health; return 204; }",
    );
    let first = conf_line(&opts, &block, "location /a");
    let wants = ["\"srv\"", "http://127.0.0.1:9/health"];
    let out =
        expect_rejected_with(&opts, &block, "location /b", "status_alert_probe", &wants).unwrap();
    assert!(out.contains(&format!("nginx.conf:{first} ")), "{out}");
}

// ---------------------------------------------------------------------------------------------
// status_alert_webhook
// ---------------------------------------------------------------------------------------------

#[test]
fn webhook_valid_forms() {
    require_module!();
    let cases = [
        "status_alert_webhook https://discord.com/api/webhooks/123456/abcDEF-token;",
        "status_alert_webhook http://127.0.0.1:9/api/webhooks/1/local;",
        "status_alert_webhook off;",
    ];
    report(
        cases
            .into_iter()
            .map(|line| {
                let block = format!("{line}\n{}", in_location("status_alert be;"));
                (line.to_string(), expect_accepted(&block))
            })
            .collect(),
    );
}

/// Writes `content` to DIR/webhook.url.
fn webhook_file(dir: &OwnDir, content: &str) -> PathBuf {
    let path = dir.0.join("webhook.url");
    fs::write(&path, content).expect("write webhook.url");
    path
}

fn webhook_file_block() -> String {
    format!(
        "status_alert_webhook file={{DIR}}/webhook.url;\n{}",
        in_location("status_alert be;")
    )
}

#[test]
fn webhook_url_from_file() {
    require_module!();
    let dir = OwnDir::new();
    webhook_file(
        &dir,
        &format!("https://discord.com/api/webhooks/987654/{TOKEN}\n"),
    );
    let conf = dir.render(&webhook_file_block(), &NginxOpts::default());
    let (ok, stdout, stderr) = dir.run(&conf, "-t");
    assert!(ok, "file= with a valid URL was rejected:\n{stderr}{stdout}");
    assert!(
        !stderr.contains(TOKEN) && !stdout.contains(TOKEN),
        "{stderr}{stdout}"
    );

    // A relative path is resolved against the configuration's directory.
    let relative = webhook_file_block().replace("file={DIR}/webhook.url", "file=webhook.url");
    let (ok, stdout, stderr) = dir.run(&dir.render(&relative, &NginxOpts::default()), "-t");
    assert!(ok, "relative file= was rejected:\n{stderr}{stdout}");
}

#[test]
fn webhook_file_token_not_in_nginx_dash_capital_t() {
    require_module!();
    let dir = OwnDir::new();
    webhook_file(
        &dir,
        &format!("https://discord.com/api/webhooks/987654/{TOKEN}\n"),
    );
    let conf = dir.render(&webhook_file_block(), &NginxOpts::default());
    let (ok, stdout, stderr) = dir.run(&conf, "-T");
    assert!(ok, "nginx -T failed:\n{stderr}{stdout}");
    // The dump really is there (so the absence of the token means something).
    assert!(
        stdout.contains("status_alert_webhook file="),
        "nginx -T printed no configuration:\n{stdout}"
    );
    assert!(
        !stdout.contains(TOKEN),
        "token in nginx -T stdout:\n{stdout}"
    );
    assert!(
        !stderr.contains(TOKEN),
        "token in nginx -T stderr:\n{stderr}"
    );
}

#[test]
fn webhook_file_with_bad_url_does_not_echo_the_token() {
    require_module!();
    let dir = OwnDir::new();
    let path = webhook_file(&dir, &format!("discord.com/api/webhooks/987654/{TOKEN}\n"));
    let opts = NginxOpts::default();
    let block = webhook_file_block();
    let conf = dir.render(&block, &opts);
    let line = conf_line(&opts, &block, "status_alert_webhook file=");
    let (ok, stdout, stderr) = dir.run(&conf, "-t");
    let out = stderr + &stdout;
    let path = path.display().to_string();
    check_rejected(ok, &out, line, &["status_alert_webhook", &path]).unwrap();
    assert!(!out.contains(TOKEN), "token leaked:\n{out}");

    // An empty file holds no URL either.
    webhook_file(&dir, "\n");
    let (ok, stdout, stderr) = dir.run(&conf, "-t");
    check_rejected(
        ok,
        &(stderr + &stdout),
        line,
        &["status_alert_webhook", &path],
    )
    .unwrap();
}

#[test]
fn webhook_invalid_forms() {
    require_module!();
    let after = in_location("status_alert be;");
    let mut results = Vec::new();

    let line = "status_alert_webhook discord.com/api/webhooks/1/supersecrettoken123;";
    let block = format!("{line}\n{after}");
    results.push((
        "URL without scheme".to_string(),
        expect_rejected(&block, line, &["discord.com"]).and_then(|out| {
            if out.contains("supersecrettoken123") {
                Err(format!("token leaked into the error:\n{out}"))
            } else {
                Ok(())
            }
        }),
    ));

    let line = "status_alert_webhook ftp://discord.com/api/webhooks/1/x;";
    let block = format!("{line}\n{after}");
    results.push((
        "ftp:// URL".to_string(),
        expect_rejected(&block, line, &["ftp://"]).map(drop),
    ));

    let line = "status_alert_webhook file={DIR}/missing-webhook.url;";
    let block = format!("{line}\n{after}");
    results.push((
        "file= that does not exist".to_string(),
        expect_rejected(&block, line, &["missing-webhook.url"]).map(drop),
    ));

    // Several destinations are allowed (README, status_alert_webhook); the same one twice is not.
    let second = "status_alert_webhook https://discord.com/api/webhooks/1/a format=discord;";
    let block =
        format!("status_alert_webhook https://discord.com/api/webhooks/1/a;\n{second}\n{after}");
    results.push((
        "the same destination twice".to_string(),
        expect_rejected(&block, second, &["duplicate"]).map(drop),
    ));

    let second = "status_alert_webhook off;";
    let block =
        format!("status_alert_webhook https://discord.com/api/webhooks/1/a;\n{second}\n{after}");
    results.push((
        "URL then off".to_string(),
        expect_rejected(&block, second, &["\"off\" cannot be combined"]).map(drop),
    ));

    for (label, block) in [
        (
            "in a server block",
            server("    status_alert_webhook https://discord.com/api/webhooks/1/a;"),
        ),
        (
            "in a location",
            in_location("status_alert_webhook https://discord.com/api/webhooks/1/a;"),
        ),
    ] {
        results.push((
            label.to_string(),
            expect_rejected(&block, "status_alert_webhook", &["not allowed here"]).map(drop),
        ));
    }
    report(results);
}

// ---------------------------------------------------------------------------------------------
// status_alert_interval, status_alert_zone, status_metrics
// ---------------------------------------------------------------------------------------------

#[test]
fn interval_zone_metrics_valid_forms() {
    require_module!();
    let cases = [
        (
            "interval 1s, window 2s",
            format!(
                "status_alert_interval 1s;\n{}",
                in_location("status_alert be window=2s;")
            ),
        ),
        (
            "interval 1m with the default window",
            format!(
                "status_alert_interval 1m;\n{}",
                in_location("status_alert be;")
            ),
        ),
        (
            "zone 1m",
            format!("status_alert_zone 1m;\n{}", in_location("status_alert be;")),
        ),
        (
            "zone 64k for one NAME",
            format!(
                "status_alert_zone 64k;\n{}",
                in_location("status_alert be;")
            ),
        ),
        ("status_metrics", in_location("status_metrics;")),
        (
            "status_metrics control=on",
            in_location("status_metrics control=on;"),
        ),
        (
            "status_metrics control=off",
            in_location("status_metrics control=off;"),
        ),
        (
            "status_metrics next to status_alert off",
            in_location("status_alert off;\n        status_metrics;"),
        ),
    ];
    report_accepted(cases);
}

#[test]
fn interval_and_zone_invalid_values() {
    require_module!();
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "interval 500ms",
            "status_alert_interval 500ms;",
            vec!["\"500ms\""],
        ),
        ("interval 0", "status_alert_interval 0;", vec!["\"0\""]),
        (
            "interval abc",
            "status_alert_interval abc;",
            vec!["\"abc\""],
        ),
        ("zone 10k", "status_alert_zone 10k;", vec!["\"10k\""]),
        ("zone abc", "status_alert_zone abc;", vec!["\"abc\""]),
        ("zone 1.5m", "status_alert_zone 1.5m;", vec!["\"1.5m\""]),
    ];
    let mut results = rejected_lines(cases, |line| {
        format!("{line}\n{}", in_location("status_alert be;"))
    });
    for (label, first, second) in [
        (
            "interval twice",
            "status_alert_interval 5s;",
            "status_alert_interval 6s;",
        ),
        (
            "zone twice",
            "status_alert_zone 1m;",
            "status_alert_zone 2m;",
        ),
    ] {
        let block = format!("{first}\n{second}\n{}", in_location("status_alert be;"));
        results.push((
            label.to_string(),
            expect_rejected(&block, second, &["duplicate"]).map(drop),
        ));
    }
    for (label, block) in [
        (
            "interval in a server",
            server("    status_alert_interval 5s;"),
        ),
        ("zone in a location", in_location("status_alert_zone 1m;")),
    ] {
        let at = if label.starts_with("interval") {
            "status_alert_interval"
        } else {
            "status_alert_zone"
        };
        results.push((
            label.to_string(),
            expect_rejected(&block, at, &["not allowed here"]).map(drop),
        ));
    }
    report(results);
}

/// A config with `n` distinct NAMEs, one location each, and `zone` as status_alert_zone.
fn many_names_block(zone: &str, n: usize) -> String {
    let locations: String = (0..n)
        .map(|i| format!("    location /svc{i} {{ status_alert svc-{i}; return 204; }}\n"))
        .collect();
    format!("status_alert_zone {zone};\n{}", server(&locations))
}

#[test]
fn zone_too_small_for_the_names() {
    require_module!();
    let (ok, out) = Nginx::test_config(&many_names_block("64k", 40), NginxOpts::default());
    assert!(!ok, "64k accepted for 40 names:\n{out}");
    let emerg = out
        .lines()
        .find(|l| l.contains("[emerg]"))
        .unwrap_or_else(|| panic!("no [emerg] line:\n{out}"));
    for want in ["status_alert_zone", "64k", "too small"] {
        assert!(emerg.contains(want), "{want:?} missing:\n{out}");
    }
    // The same names fit in an automatically sized zone and in a large one.
    expect_accepted(&many_names_block("4m", 40)).unwrap();
    let auto = many_names_block("4m", 40).replacen("status_alert_zone 4m;\n", "", 1);
    expect_accepted(&auto).unwrap();
}

#[test]
fn zone_too_small_names_the_zone_line() {
    require_module!();
    let block = many_names_block("64k", 40);
    expect_rejected(&block, "status_alert_zone 64k;", &["64k", "too small"]).unwrap();
}

#[test]
fn status_metrics_invalid_forms() {
    require_module!();
    let mut results = vec![
        (
            "with a bad argument".to_string(),
            expect_rejected(
                &in_location("status_metrics on;"),
                "status_metrics on;",
                &["invalid parameter \"on\", expected \"control=on\" or \"control=off\""],
            )
            .map(drop),
        ),
        (
            "control=yes".to_string(),
            expect_rejected(
                &in_location("status_metrics control=yes;"),
                "status_metrics control=yes;",
                &["\"control=yes\""],
            )
            .map(drop),
        ),
        (
            "two arguments".to_string(),
            expect_rejected(
                &in_location("status_metrics control=on control=off;"),
                "status_metrics control=on control=off;",
                &["arguments"],
            )
            .map(drop),
        ),
    ];
    for (label, block) in [
        (
            "server level",
            server("    status_metrics;\n    location / { return 204; }"),
        ),
        (
            "http level",
            format!("status_metrics;\n{}", in_location("return 204;")),
        ),
    ] {
        results.push((
            label.to_string(),
            expect_rejected(&block, "status_metrics;", &["not allowed here"]).map(drop),
        ));
    }
    let block = in_location("status_metrics;\n        status_metrics; # again");
    results.push((
        "twice in one location".to_string(),
        expect_rejected(&block, "status_metrics; # again", &["duplicate"]).map(drop),
    ));
    report(results);
}

// ---------------------------------------------------------------------------------------------
// status_alert_maintenance
// ---------------------------------------------------------------------------------------------

#[test]
fn maintenance_valid_forms() {
    require_module!();
    let with_be = |line: &str| format!("{line}\n{}", in_location("status_alert be;"));
    let cases = [
        (
            "weekdays at night",
            with_be("status_alert_maintenance be mon-fri 22:00-23:30;"),
        ),
        (
            "every NAME, weekends, fixed offset",
            with_be("status_alert_maintenance * sat,sun 00:00-24:00 tz=+02:00;"),
        ),
        (
            "across midnight, local time, twice",
            with_be(
                "status_alert_maintenance be fri-mon 23:00-01:00 tz=local;\n\
                 status_alert_maintenance be wed 12:00-12:30 tz=UTC;",
            ),
        ),
        (
            "a NAME defined after the window",
            format!(
                "status_alert_maintenance api * 01:00-02:00;\n{}",
                in_location("status_alert api;")
            ),
        ),
    ];
    report_accepted(cases);
}

#[test]
fn maintenance_invalid_forms() {
    require_module!();
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "bad days",
            "status_alert_maintenance be weekdays 22:00-23:00;",
            vec!["invalid days value \"weekdays\""],
        ),
        (
            "bad hours",
            "status_alert_maintenance be mon 9:00-17:00;",
            vec!["invalid hours value \"9:00-17:00\""],
        ),
        (
            "empty window",
            "status_alert_maintenance be mon 10:00-10:00;",
            vec!["the window \"10:00-10:00\" is empty"],
        ),
        (
            "time zone name",
            "status_alert_maintenance be mon 10:00-11:00 tz=Europe/Berlin;",
            vec!["invalid tz value \"Europe/Berlin\""],
        ),
        (
            "missing hours",
            "status_alert_maintenance be mon;",
            vec!["expects NAME or \"*\", DAYS and HH:MM-HH:MM"],
        ),
        (
            "unknown NAME",
            "status_alert_maintenance db * 01:00-02:00;",
            vec!["\"db\" is not a NAME of any \"status_alert\""],
        ),
    ];
    let mut results = rejected_lines(cases, |line| {
        format!("{line}\n{}", in_location("status_alert be;"))
    });
    results.push((
        "in a server".to_string(),
        expect_rejected(
            &server("    status_alert_maintenance * * 01:00-02:00;"),
            "status_alert_maintenance",
            &["not allowed here"],
        )
        .map(drop),
    ));
    report(results);
}

// ---------------------------------------------------------------------------------------------
// Functional: what `status_alert off` and inheritance count
// ---------------------------------------------------------------------------------------------

#[test]
fn off_and_inheritance_decide_what_is_counted() {
    require_module!();
    let block = server(
        "    status_alert srv;\n\
         \x20   location /off { status_alert off; return 200; }\n\
         \x20   location /api { status_alert api; return 503; }\n\
         \x20   location /inherit { return 404; }\n\
         \x20   location = /m { status_alert off; status_metrics; }",
    );
    let nginx = Nginx::start(&block, NginxOpts::default());
    for (path, status, times) in [("/off", 200, 3), ("/api", 503, 2), ("/inherit", 404, 4)] {
        for _ in 0..times {
            assert_eq!(http_get(nginx.port, path).status, status, "GET {path}");
        }
    }

    // Requests are counted in the log phase, which may run just after the client has its
    // response: poll until the expected counts show up, then check everything exactly.
    let total = |s: &[Sample]| -> f64 {
        s.iter()
            .filter(|(n, _, _)| n == "nginx_location_requests_total")
            .map(|(_, _, v)| v)
            .sum()
    };
    let fetch = || {
        let r = http_get(nginx.port, "/m");
        assert_eq!(r.status, 200, "GET /m: {}", r.text());
        r.text()
    };
    let settled = wait_until(Duration::from_secs(5), || {
        total(&parse_prometheus(&fetch())) >= 6.0
    });
    assert!(settled, "counts never reached 6:\n{}", fetch());
    // Until the counts stop changing: a stray count (of /off or /m, which must not count) lands.
    let mut text = String::new();
    settle(Duration::from_millis(300), Duration::from_secs(5), || {
        text = fetch();
        total(&parse_prometheus(&text)).to_bits()
    });
    let samples = parse_prometheus(&text);
    let count = |location: &str, status: &str| {
        metric(
            &samples,
            "nginx_location_requests_total",
            &[("location", location), ("status", status)],
        )
    };
    assert_eq!(count("api", "503"), Some(2.0), "{text}");
    assert_eq!(count("srv", "404"), Some(4.0), "{text}");
    assert_eq!(
        total(&samples),
        6.0,
        "only /api and /inherit count:\n{text}"
    );
    for (name, labels, value) in &samples {
        if name == "nginx_location_requests_total" {
            assert!(
                labels
                    .iter()
                    .all(|(k, v)| k != "status" || v == "503" || v == "404"),
                "status 200 only came from the off location: {labels:?} = {value}\n{text}"
            );
        }
    }
    nginx.assert_log_clean();
}

#[test]
fn status_alert_off_takes_no_parameters() {
    require_module!();
    // Without this check `off warn=1%` would silently define a NAME called "off".
    let block = in_location("status_alert off warn=1%;");
    let out = expect_rejected(&block, "status_alert off", &["\"off\" takes no parameters"])
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(out.contains("warn=1%"), "{out}");
}

// ---------------------------------------------------------------------------------------------
// latency=, slo= and status_alert_buckets (README, status_alert and status_alert_buckets)
// ---------------------------------------------------------------------------------------------

#[test]
fn latency_slo_and_buckets_valid_forms() {
    require_module!();
    report_accepted([
        (
            "latency warn only",
            in_location("status_alert api latency=p95:500ms;"),
        ),
        (
            "latency warn and crit",
            in_location("status_alert api latency=p99.9:1s:2.5s;"),
        ),
        ("slo", in_location("status_alert api slo=99.9%;")),
        (
            "both",
            format!(
                "status_alert_interval 1s;\n{}",
                in_location("status_alert api window=2s latency=p50:100ms:1s slo=99%;")
            ),
        ),
        (
            "buckets",
            format!(
                "status_alert_buckets 1ms 5ms 50ms 500ms 5s;\n{}",
                in_location("status_alert api latency=p95:50ms:5s;")
            ),
        ),
    ]);
}

#[test]
fn latency_slo_and_buckets_invalid_values() {
    require_module!();
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "percentile above 99.9",
            "status_alert api latency=p100:1s;",
            vec!["p100", "p50 to p99.9"],
        ),
        (
            "percentile below 50",
            "status_alert api latency=p10:1s;",
            vec!["p10"],
        ),
        (
            "warn not below crit",
            "status_alert api latency=p95:2s:1s;",
            vec!["latency=p95:2s:1s"],
        ),
        ("slo 100", "status_alert api slo=100%;", vec!["slo"]),
        ("slo 0", "status_alert api slo=0;", vec!["slo"]),
    ];
    report(rejected_lines(cases, in_location));

    let buckets: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "not increasing",
            "status_alert_buckets 10ms 5ms;",
            vec!["5ms"],
        ),
        (
            "not a time",
            "status_alert_buckets 10ms fast;",
            vec!["fast"],
        ),
    ];
    report(rejected_lines(buckets, |line| {
        format!("{line}\n{}", in_location("status_alert api;"))
    }));
    let too_many: String = (1..=31).map(|i| format!("{i}ms ")).collect();
    let line = format!("status_alert_buckets {};", too_many.trim_end());
    let block = format!("{line}\n{}", in_location("status_alert api;"));
    expect_rejected(&block, &line, &["30"]).unwrap();

    // The same NAME with a different latency= in two places.
    let block = server(
        "    location /a { status_alert api latency=p95:1s; return 204; }\n    \
         location /b { status_alert api latency=p99:1s; return 204; }",
    );
    expect_rejected(
        &block,
        "status_alert api latency=p99:1s;",
        &["\"api\"", "different"],
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// traffic= (docs/directives.md, status_alert: traffic drops)
// ---------------------------------------------------------------------------------------------

#[test]
fn traffic_valid_forms() {
    require_module!();
    report_accepted([
        ("count", in_location("status_alert api traffic=100;")),
        ("counts", in_location("status_alert api traffic=100:10;")),
        (
            "percentages",
            in_location("status_alert api traffic=50%:12.5%;"),
        ),
        (
            "mixed, with min_requests",
            in_location("status_alert api traffic=50%:1 min_requests=100;"),
        ),
    ]);
}

#[test]
fn traffic_invalid_values() {
    require_module!();
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "zero",
            "status_alert api traffic=0;",
            vec!["invalid threshold \"0\" in \"traffic=0\"", "request count"],
        ),
        (
            "a hundred percent",
            "status_alert api traffic=100%;",
            vec!["invalid threshold \"100%\""],
        ),
        (
            "three parts",
            "status_alert api traffic=50%:10%:1%;",
            vec!["invalid traffic \"50%:10%:1%\"", "WARN[:CRIT]"],
        ),
        (
            "critical above warning",
            "status_alert api traffic=10:100;",
            vec!["critical threshold must be below the warning threshold"],
        ),
    ];
    report(rejected_lines(cases, in_location));
    // The same NAME with a different traffic= in two places.
    let block = server(
        "    location /a { status_alert api traffic=10; return 204; }\n    \
         location /b { status_alert api traffic=20; return 204; }",
    );
    expect_rejected(
        &block,
        "status_alert api traffic=20;",
        &["\"api\"", "different"],
    )
    .unwrap();
}

// ---------------------------------------------------------------------------------------------
// Destinations: status_alert_webhook ... format=, status_alert_alertmanager
// ---------------------------------------------------------------------------------------------

#[test]
fn destinations_valid_forms() {
    require_module!();
    let body = in_location("status_alert api;");
    report_accepted([
        (
            "three formats",
            format!(
                "status_alert_webhook http://127.0.0.1:9/a;\n\
                 status_alert_webhook http://127.0.0.1:9/b format=slack;\n\
                 status_alert_webhook format=json http://127.0.0.1:9/c;\n{body}"
            ),
        ),
        (
            "an Alertmanager cluster",
            format!(
                "status_alert_alertmanager http://127.0.0.1:9093 http://127.0.0.2:9093/;\n{body}"
            ),
        ),
        (
            "webhook and Alertmanager",
            format!(
                "status_alert_webhook http://127.0.0.1:9/a;\n\
                 status_alert_alertmanager http://127.0.0.1:9093;\n{body}"
            ),
        ),
    ]);
}

#[test]
fn destinations_invalid_values() {
    require_module!();
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "unknown format",
            "status_alert_webhook http://127.0.0.1:9/a format=teams;",
            vec!["teams", "discord, slack or json"],
        ),
        (
            "off with a format",
            "status_alert_webhook off format=slack;",
            vec!["off"],
        ),
        (
            "alertmanager without a scheme",
            "status_alert_alertmanager am1:9093;",
            vec!["am1:9093"],
        ),
    ];
    report(rejected_lines(cases, |line| {
        format!("{line}\n{}", in_location("status_alert api;"))
    }));
    // `off` and a destination do not mix; the same destination twice is a mistake.
    let line = "status_alert_webhook off;";
    let block = format!(
        "status_alert_webhook http://127.0.0.1:9/a;\n{line}\n{}",
        in_location("status_alert api;")
    );
    expect_rejected(&block, line, &["off"]).unwrap();
    let line = "status_alert_webhook http://127.0.0.1:9/a format=discord;";
    let block = format!(
        "status_alert_webhook http://127.0.0.1:9/a;\n{line}\n{}",
        in_location("status_alert api;")
    );
    expect_rejected(&block, line, &["duplicate"]).unwrap();
}

#[test]
fn routing_valid_forms() {
    require_module!();
    let body = in_location("status_alert api;");
    report_accepted([
        (
            "min_level, after and mentions",
            format!(
                "status_alert_webhook http://127.0.0.1:9/a;\n\
                 status_alert_webhook http://127.0.0.1:9/b min_level=critical \
                 mention=role:123456789012345678,user:42,here;\n\
                 status_alert_webhook after=15m http://127.0.0.1:9/c format=slack \
                 mention=U012AB3CD,S0614TZR7;\n{body}"
            ),
        ),
        (
            "an Alertmanager second tier",
            format!(
                "status_alert_alertmanager http://127.0.0.1:9093 min_level=critical after=5m;\n{body}"
            ),
        ),
    ]);
}

#[test]
fn routing_invalid_values() {
    require_module!();
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "unknown level",
            "status_alert_webhook http://127.0.0.1:9/a min_level=info;",
            vec!["invalid min_level value \"info\"", "warning or critical"],
        ),
        (
            "after below 1s",
            "status_alert_webhook http://127.0.0.1:9/a after=500ms;",
            vec!["invalid after value \"500ms\""],
        ),
        (
            "mention of everyone",
            "status_alert_webhook http://127.0.0.1:9/a mention=@everyone;",
            vec!["invalid mention \"@everyone\"", "role:ID, user:ID or here"],
        ),
        (
            "mention for json",
            "status_alert_webhook http://127.0.0.1:9/a format=json mention=here;",
            vec!["mention= needs format=discord or format=slack"],
        ),
        (
            "a Discord mention for Slack",
            "status_alert_webhook http://127.0.0.1:9/a format=slack mention=role:1;",
            vec!["invalid mention \"role:1\""],
        ),
        (
            "off with routing",
            "status_alert_webhook off min_level=critical;",
            vec!["\"off\" takes no other parameters"],
        ),
        (
            "mention for Alertmanager",
            "status_alert_alertmanager http://127.0.0.1:9093 mention=here;",
            vec!["mention= is not supported for Alertmanager"],
        ),
    ];
    report(rejected_lines(cases, |line| {
        format!("{line}\n{}", in_location("status_alert api;"))
    }));
    // A ninth routed destination.
    let routed: String = (1..=9)
        .map(|i| format!("status_alert_webhook http://127.0.0.1:9/{i} after=1m;\n"))
        .collect();
    let block = format!("{routed}{}", in_location("status_alert api;"));
    expect_rejected(
        &block,
        "status_alert_webhook http://127.0.0.1:9/9 after=1m;",
        &["at most 8 destinations with min_level= or after="],
    )
    .unwrap();
}

#[test]
fn status_alert_state_path_is_created_private_and_refused_when_others_can_write() {
    require_module!();
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let base = temp_dir("state-path");
    let with_path = |p: &std::path::Path| {
        format!(
            "status_alert_state_path {};\n{}",
            p.display(),
            in_location("status_alert api;")
        )
    };
    // Valid: nginx -t creates it, 0700, owned by the worker user (nobody when run as root).
    let fresh = base.path().join("fresh");
    expect_accepted(&with_path(&fresh)).unwrap();
    let meta = std::fs::metadata(&fresh).expect("nginx -t created the state directory");
    assert_eq!(meta.mode() & 0o777, 0o700, "mode of {}", fresh.display());
    // nginx started as root gives it to its workers' user (nobody).
    let root = std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false);
    if root {
        assert_ne!(meta.uid(), 0, "given to the worker user");
    }
    // Invalid: writable by others, a symbolic link, a world-writable parent without sticky bit.
    let open = base.path().join("open");
    std::fs::create_dir(&open).unwrap();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
    let link = base.path().join("link");
    std::os::unix::fs::symlink(&fresh, &link).unwrap();
    let world = base.path().join("world");
    std::fs::create_dir(&world).unwrap();
    std::fs::set_permissions(&world, std::fs::Permissions::from_mode(0o777)).unwrap();
    let mut cases = Vec::new();
    for (label, dir, want) in [
        (
            "others can write",
            open.clone(),
            "writable by group or others",
        ),
        ("a link", link.clone(), "symbolic link"),
        (
            "in a world-writable parent",
            world.join("state"),
            "every user can write to",
        ),
    ] {
        let (ok, out) = Nginx::test_config(&with_path(&dir), NginxOpts::default());
        let emerg = out.lines().find(|l| l.contains("[emerg]")).unwrap_or("");
        let result = if ok {
            Err(format!("accepted:\n{out}"))
        } else if !(emerg.contains(want)
            && emerg.contains(&dir.display().to_string())
            && emerg.contains("status_alert_state_path in"))
        {
            Err(format!(
                "{want:?}, the path and the directive missing:\n{out}"
            ))
        } else {
            Ok(())
        };
        cases.push((label.to_string(), result));
    }
    // Given twice.
    let twice = format!("status_alert_state_path /a;\n{}", with_path(&fresh));
    cases.push((
        "duplicate".into(),
        expect_rejected(
            &twice,
            &format!("status_alert_state_path {};", fresh.display()),
            &["is duplicate"],
        )
        .map(|_| ()),
    ));
    report(cases);
}

// ---------------------------------------------------------------------------------------------
// status_alert_heartbeat
// ---------------------------------------------------------------------------------------------

#[test]
fn heartbeat_valid_forms() {
    require_module!();
    let body = in_location("status_alert be;");
    let probe_only = server("    status_alert_probe tcp://127.0.0.1:9 name=db;");
    report_accepted([
        (
            "healthchecks.io, default interval",
            format!("status_alert_heartbeat https://hc-ping.com/0b1c2d3e-4f5a;\n{body}"),
        ),
        (
            "Uptime Kuma push URL, interval first",
            format!(
                "status_alert_heartbeat interval=30s \
                 https://kuma.example.com/api/push/pushTok3n?status=up&msg=OK&ping=;\n{body}"
            ),
        ),
        (
            "http:// and interval=1h",
            format!("status_alert_heartbeat http://127.0.0.1:9/ping interval=1h;\n{body}"),
        ),
        (
            "with status_alert_webhook off",
            format!(
                "status_alert_webhook off;\n\
                 status_alert_heartbeat https://hc-ping.com/0b1c2d3e-4f5a;\n{body}"
            ),
        ),
        (
            "off after the heartbeat",
            format!(
                "status_alert_heartbeat https://hc-ping.com/0b1c2d3e-4f5a;\n\
                 status_alert_webhook off;\n{body}"
            ),
        ),
        (
            "next to a webhook with the same URL",
            format!(
                "status_alert_heartbeat http://127.0.0.1:9/a;\n\
                 status_alert_webhook http://127.0.0.1:9/a;\n{body}"
            ),
        ),
        (
            "with probes only",
            format!("status_alert_heartbeat https://hc-ping.com/0b1c2d3e-4f5a;\n{probe_only}"),
        ),
    ]);
}

#[test]
fn heartbeat_url_from_file_stays_secret() {
    require_module!();
    let dir = OwnDir::new();
    fs::write(
        dir.0.join("heartbeat.url"),
        format!("https://hc-ping.com/{TOKEN}\n"),
    )
    .expect("write heartbeat.url");
    let block = format!(
        "status_alert_heartbeat file=heartbeat.url interval=2m;\n{}",
        in_location("status_alert be;")
    );
    let conf = dir.render(&block, &NginxOpts::default());
    let (ok, stdout, stderr) = dir.run(&conf, "-T");
    assert!(ok, "file= with a valid URL was rejected:\n{stderr}{stdout}");
    assert!(
        stdout.contains("status_alert_heartbeat file=heartbeat.url"),
        "nginx -T printed no configuration:\n{stdout}"
    );
    assert!(
        !stdout.contains(TOKEN) && !stderr.contains(TOKEN),
        "{stderr}{stdout}"
    );

    // A file holding no URL is refused without showing what it holds.
    fs::write(
        dir.0.join("heartbeat.url"),
        format!("hc-ping.com/{TOKEN}\n"),
    )
    .expect("write heartbeat.url");
    let opts = NginxOpts::default();
    let line = conf_line(&opts, &block, "status_alert_heartbeat file=");
    let (ok, stdout, stderr) = dir.run(&conf, "-t");
    let out = stderr + &stdout;
    check_rejected(ok, &out, line, &["status_alert_heartbeat", "heartbeat.url"]).unwrap();
    assert!(!out.contains(TOKEN), "token leaked:\n{out}");
}

#[test]
fn heartbeat_invalid_forms() {
    require_module!();
    let after = in_location("status_alert be;");
    let cases: Vec<(&str, &str, Vec<&str>)> = vec![
        (
            "URL without scheme",
            "status_alert_heartbeat hc-ping.com/0b1c2d3e-4f5a;",
            vec!["invalid heartbeat value", "hc-ping.com/"],
        ),
        (
            "ftp:// URL",
            "status_alert_heartbeat ftp://hc-ping.com/x;",
            vec!["\"ftp://hc-ping.com/x\"", "http:// or https://"],
        ),
        (
            "off",
            "status_alert_heartbeat off;",
            vec!["invalid heartbeat value \"off\""],
        ),
        (
            "interval below 1s",
            "status_alert_heartbeat https://hc-ping.com/x interval=500ms;",
            vec!["invalid interval value \"500ms\""],
        ),
        (
            "interval not a time",
            "status_alert_heartbeat https://hc-ping.com/x interval=often;",
            vec!["invalid interval value \"often\""],
        ),
        (
            "interval twice (a third argument)",
            "status_alert_heartbeat interval=1m https://hc-ping.com/x interval=2m;",
            vec!["invalid number of arguments"],
        ),
        (
            "two URLs",
            "status_alert_heartbeat https://hc-ping.com/x https://hc-ping.com/y;",
            vec!["invalid parameter \"https://hc-ping.com/y\""],
        ),
        (
            "unknown parameter",
            "status_alert_heartbeat https://hc-ping.com/x format=json;",
            vec!["invalid parameter \"format=json\""],
        ),
        (
            "file= that does not exist",
            "status_alert_heartbeat file={DIR}/missing-heartbeat.url;",
            vec!["cannot read heartbeat URL", "missing-heartbeat.url"],
        ),
    ];
    let mut results = rejected_lines(cases, |line| format!("{line}\n{after}"));

    // At most one per http block: nginx's own duplicate message, at the second one.
    let second = "status_alert_heartbeat https://hc-ping.com/y;";
    let block = format!("status_alert_heartbeat https://hc-ping.com/x;\n{second}\n{after}");
    results.push((
        "twice".to_string(),
        expect_rejected(
            &block,
            second,
            &["\"status_alert_heartbeat\" directive is duplicate"],
        )
        .map(drop),
    ));

    // Without a NAME or a probe nothing is evaluated, so no beat would ever go out.
    let line = "status_alert_heartbeat https://hc-ping.com/x;";
    let block = format!("{line}\n{}", server("    location / { return 204; }"));
    results.push((
        "nothing to evaluate".to_string(),
        expect_rejected(
            &block,
            line,
            &["no \"status_alert\" or \"status_alert_probe\""],
        )
        .map(drop),
    ));

    for (label, block) in [
        (
            "in a server block",
            server("    status_alert_heartbeat https://hc-ping.com/x;"),
        ),
        (
            "in a location",
            in_location("status_alert_heartbeat https://hc-ping.com/x;"),
        ),
    ] {
        results.push((
            label.to_string(),
            expect_rejected(&block, "status_alert_heartbeat", &["not allowed here"]).map(drop),
        ));
    }
    report(results);
}
