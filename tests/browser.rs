//! The HTML status page (README, status_metrics) as a real browser renders it: headless
//! Chromium (Debian's `chromium`, installed by `ci/deps`) opens `/status_metrics?format=html`
//! of an nginx whose NAMEs and probes are in known states, and
//!
//! 1. takes screenshots at phone (390x844) and desktop (1280x900) size into `target/browser/`;
//! 2. dumps the DOM after rendering: the numbers, levels and probe states are those of
//!    `?format=json`, the hostile probe URL is text, and no `<script>` element exists;
//! 3. goes through a recording HTTP proxy that even loopback traffic must use: the page itself
//!    is the only request the browser makes (no favicon, font, style sheet or image).
//!
//! Without `/usr/bin/chromium` the test prints a SKIP line and passes, or fails under CI.

use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use serde_json::Value;
use status_alert_testkit::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const HOSTILE: &str = r#"http://x/"><script>alert(1)</script>"#;
/// Upper bound of one Chromium run; a normal one takes about a second.
const CHROMIUM_TIMEOUT: Duration = Duration::from_secs(60);
const PAGE: &str = "/status_metrics?format=html";

// ---------------------------------------------------------------------------------------------
// A recording HTTP forward proxy
// ---------------------------------------------------------------------------------------------

/// One request a browser sent to the [`RecordingProxy`].
#[derive(Clone, Debug)]
struct Proxied {
    /// As sent: `GET http://127.0.0.1:8080/x HTTP/1.1`, `CONNECT host:443 HTTP/1.1`.
    line: String,
    /// It carried `Sec-Fetch-*` headers, which Chromium sends with every request a page makes
    /// (navigation, image, style, font...) and not with its own service requests. A CONNECT
    /// shows only the proxy its headers, never those of the tunnelled request.
    from_page: bool,
}

/// Host names of Chromium's own services that Debian's Chromium 156 contacts at start-up even
/// with `--disable-background-networking --disable-component-update` (seen: the component
/// updater asking update.googleapis.com for the Optimization Guide on-device model manifest,
/// accounts.google.com, the network time service on clients2.google.com). The test checks
/// that the page names none of these domains, and it runs no script, so a request to them
/// cannot come from the page; it is the browser's, and only listed.
const BROWSER_SERVICE_DOMAINS: [&str; 3] = ["google.com", "googleapis.com", "gvt1.com"];

impl Proxied {
    /// The host the request is for (without port), if it names one.
    fn host(&self) -> Option<&str> {
        let mut parts = self.line.split_whitespace();
        let (method, target) = (parts.next()?, parts.next()?);
        let authority = if method == "CONNECT" {
            target
        } else {
            target.strip_prefix("http://")?.split('/').next()?
        };
        authority
            .rsplit_once(':')
            .map(|(h, _)| h)
            .or(Some(authority))
    }

    /// A request of Chromium itself (see [`BROWSER_SERVICE_DOMAINS`]), not of the page.
    fn is_browser_service(&self) -> bool {
        !self.from_page
            && self.host().is_some_and(|h| {
                BROWSER_SERVICE_DOMAINS
                    .iter()
                    .any(|d| h == *d || h.ends_with(&format!(".{d}")))
            })
    }
}

/// `proxied` split into Chromium's own service requests and everything else.
fn split_proxied(proxied: &[Proxied]) -> (Vec<&Proxied>, Vec<&Proxied>) {
    proxied.iter().partition(|r| r.is_browser_service())
}

/// A forward proxy on 127.0.0.1 that records every request a browser asks it for, relays
/// plain-HTTP GETs for `http://127.0.0.1:<allowed_port>/...` to that port and refuses
/// everything else (CONNECT included, so no HTTPS leaves either). One request per connection
/// (`Connection: close`). Stops on drop.
struct RecordingProxy {
    port: u16,
    requests: Arc<Mutex<Vec<Proxied>>>,
    stop: Arc<AtomicBool>,
    accept_thread: Option<JoinHandle<()>>,
}

impl RecordingProxy {
    fn start(allowed_port: u16) -> RecordingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy: bind 127.0.0.1:0");
        let port = listener.local_addr().expect("proxy: local_addr").port();
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (requests2, stop2) = (requests.clone(), stop.clone());
        let accept_thread = thread::Builder::new()
            .name(format!("proxy-{port}"))
            .spawn(move || {
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else { continue };
                    let requests = requests2.clone();
                    let _ = thread::Builder::new()
                        .name(format!("proxy-{port}-conn"))
                        .spawn(move || {
                            let _ = proxy_one(stream, allowed_port, &requests);
                        });
                }
            })
            .expect("spawn proxy accept thread");
        RecordingProxy {
            port,
            requests,
            stop,
            accept_thread: Some(accept_thread),
        }
    }

    /// Requests received so far, in arrival order.
    fn requests(&self) -> Vec<Proxied> {
        self.requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the blocking accept with a connection to ourselves.
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        if TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok() {
            if let Some(t) = self.accept_thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn refuse(client: &mut TcpStream, status: &str) -> io::Result<()> {
    write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    client.flush()
}

/// Serves one proxied request on `client`.
fn proxy_one(
    mut client: TcpStream,
    allowed_port: u16,
    requests: &Mutex<Vec<Proxied>>,
) -> io::Result<()> {
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut reader = BufReader::new(client.try_clone()?);
    let mut line = String::new();
    if reader.read_line(&mut line)? == 0 {
        return Ok(()); // the wake-up connection of Drop, or a speculative preconnect
    }
    let request_line = line.trim_end().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if reader.read_line(&mut line)? == 0 {
            break;
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        headers.push(l.to_string());
    }
    let from_page = headers
        .iter()
        .any(|h| h.to_ascii_lowercase().starts_with("sec-fetch-"));
    requests
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(Proxied {
            line: request_line.clone(),
            from_page,
        });

    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let prefix = format!("http://127.0.0.1:{allowed_port}/");
    let path = match target.strip_prefix(&prefix) {
        Some(rest) if method == "GET" => format!("/{rest}"),
        _ if method == "CONNECT" => return refuse(&mut client, "405 Method Not Allowed"),
        _ => return refuse(&mut client, "403 Forbidden"),
    };
    let mut upstream = TcpStream::connect(("127.0.0.1", allowed_port))?;
    let mut head = format!("GET {path} HTTP/1.1\r\n");
    for h in &headers {
        let name = h
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if !matches!(
            name.as_str(),
            "connection" | "proxy-connection" | "keep-alive"
        ) {
            head.push_str(h);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    upstream.write_all(head.as_bytes())?;
    // nginx closes after the response (Connection: close), which ends the copy.
    let mut response = Vec::new();
    upstream.read_to_end(&mut response)?;
    client.write_all(&response)?;
    client.flush()?;
    let _ = client.shutdown(Shutdown::Both);
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Chromium
// ---------------------------------------------------------------------------------------------

struct ChromiumRun {
    stdout: String,
    stderr: String,
    /// Requests the proxy saw during this run.
    proxied: Vec<Proxied>,
    took: Duration,
}

/// Runs headless Chromium on `url` with `extra` flags, through a fresh [`RecordingProxy`] that
/// relays only to `nginx_port`, in a fresh profile; kills its process group after
/// [`CHROMIUM_TIMEOUT`]. Panics if it fails or times out.
fn chromium(nginx_port: u16, url: &str, extra: &[String]) -> ChromiumRun {
    let proxy = RecordingProxy::start(nginx_port);
    let dir = temp_dir("chromium");
    let profile = dir.path().join("profile");
    fs::create_dir(&profile).expect("create the Chromium profile dir");
    let (out_path, err_path) = (dir.path().join("stdout"), dir.path().join("stderr"));
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--disable-extensions",
        "--disable-default-apps",
        "--disable-features=NetworkTimeServiceQuerying",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!("--proxy-server=http://127.0.0.1:{}", proxy.port))
    // Chromium bypasses the proxy for loopback by default; `<-loopback>` removes that rule.
    .arg("--proxy-bypass-list=<-loopback>")
    .args(extra)
    .arg(url)
    .stdin(Stdio::null())
    .stdout(fs::File::create(&out_path).expect("create stdout file"))
    .stderr(fs::File::create(&err_path).expect("create stderr file"))
    // Its own process group: on timeout the browser and its helpers are killed together.
    .process_group(0);
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {CHROMIUM}: {e}"));
    let pgid = Pid::from_raw(i32::try_from(child.id()).expect("pid fits in i32"));
    let status = loop {
        match child.try_wait().expect("wait for Chromium") {
            Some(status) => break Some(status),
            None if started.elapsed() < CHROMIUM_TIMEOUT => {
                thread::sleep(Duration::from_millis(20))
            }
            None => break None,
        }
    };
    let took = started.elapsed();
    // Helpers (renderer, zygote) that outlive the browser process, or everything on timeout.
    let _ = killpg(pgid, Signal::SIGKILL);
    let _ = child.wait();
    let read = |p: &Path| String::from_utf8_lossy(&fs::read(p).unwrap_or_default()).into_owned();
    let (stdout, stderr) = (read(&out_path), read(&err_path));
    match status {
        None => panic!(
            "Chromium did not finish within {CHROMIUM_TIMEOUT:?} (killed); flags {extra:?}\n\
             --- stderr ---\n{stderr}"
        ),
        Some(s) if !s.success() => {
            panic!("Chromium exited with {s}; flags {extra:?}\n--- stderr ---\n{stderr}")
        }
        Some(_) => {}
    }
    ChromiumRun {
        stdout,
        stderr,
        proxied: proxy.requests(),
        took,
    }
}

/// Width and height from a PNG's IHDR chunk; panics if `bytes` is not a PNG.
fn png_size(bytes: &[u8], what: &str) -> (u32, u32) {
    assert!(
        bytes.len() > 24 && bytes.starts_with(b"\x89PNG\r\n\x1a\n") && &bytes[12..16] == b"IHDR",
        "{what} is not a PNG ({} bytes)",
        bytes.len()
    );
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().expect("4 bytes"));
    (be(16), be(20))
}

/// `target/browser/` of this build (the test executable is `target/<profile>/deps/browser-*`).
fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    let target = exe
        .ancestors()
        .nth(3)
        .expect("the test executable is in <target>/<profile>/deps/");
    let dir = target.join("browser");
    fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// `s` as an HTML serializer writes a text node: `&`, `<`, `>` escaped, quotes kept.
fn as_dom_text(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The `<section ...>...</section>` card of NAME in the serialized DOM.
fn card<'a>(dom: &'a str, name: &str) -> &'a str {
    let h2 = format!("<h2>{}</h2>", as_dom_text(name));
    dom.split("<section ")
        .find(|s| s.contains(&h2))
        .and_then(|s| s.split("</section>").next())
        .unwrap_or_else(|| panic!("no card for {name} in the DOM:\n{dom}"))
}

/// The table row showing probe `target` in the serialized DOM.
fn probe_row<'a>(dom: &'a str, target: &str) -> &'a str {
    let code = format!("<code>{}</code>", as_dom_text(target));
    dom.split("<tr>")
        .find(|r| r.contains(&code))
        .and_then(|r| r.split("</tr>").next())
        .unwrap_or_else(|| panic!("no row for probe {target} in the DOM:\n{dom}"))
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

#[test]
fn chromium_renders_the_status_page_from_nginx_alone() {
    require_module!();
    require!(program_ready(CHROMIUM));
    let test_started = Instant::now();
    let upstream = Upstream::start();
    upstream.set("/health", 200, "ok");
    let up_target = upstream.url("/health");
    let down_target = format!("http://127.0.0.1:{}/health", closed_port());

    // api: critical (all 503); web: ok, with an UP probe; quiet: 100% 5xx but under
    // min_requests, so ok; the DOWN probe under api, the hostile one on its own NAME.
    let block = format!(
        r#"
        status_alert_interval 1s;
        status_alert_probe '{HOSTILE}' name=edge interval=1s timeout=500ms;
        server {{
            listen 127.0.0.1:{{PORT}};
            location /api/ {{
                status_alert api window=1m link=https://logs.example.com/api;
                status_alert_probe {down_target} interval=1s timeout=500ms;
                return 503;
            }}
            location /web/ {{
                status_alert web window=1m;
                status_alert_probe {up_target} interval=1s timeout=500ms;
                return 200;
            }}
            location /quiet/ {{ status_alert quiet window=1m min_requests=20; return 503; }}
            location = /status_metrics {{ status_alert off; status_metrics; }}
            location = /control {{
                status_alert off;
                default_type text/html;
                return 200 '<!DOCTYPE html><title>control</title><img src="/pixel.png">
                            <link rel="stylesheet" href="https://cdn.example.net/x.css">';
            }}
        }}
        "#
    );
    let nginx = Nginx::start(&block, NginxOpts::default());
    assert!(hammer(nginx.port, "/api/x", 40, 2)
        .iter()
        .all(|s| *s == 503));
    assert!(hammer(nginx.port, "/web/x", 30, 2)
        .iter()
        .all(|s| *s == 200));
    assert!(hammer(nginx.port, "/quiet/x", 5, 1)
        .iter()
        .all(|s| *s == 503));

    let location = |doc: &Value, name: &str| doc["locations"][name].clone();
    let probe = |doc: &Value, target: &str| {
        doc["probes"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["target"] == target).cloned())
            .unwrap_or(Value::Null)
    };
    let mut doc = Value::Null;
    let settled = wait_until(Duration::from_secs(15), || {
        doc = http_get(nginx.port, "/status_metrics?format=json").json();
        location(&doc, "api")["alert_state"] == "critical"
            && location(&doc, "api")["window"]["requests"] == 40
            && location(&doc, "web")["alert_state"] == "ok"
            && location(&doc, "web")["window"]["requests"] == 30
            && location(&doc, "quiet")["alert_state"] == "ok"
            && location(&doc, "quiet")["window"]["requests"] == 5
            && probe(&doc, &up_target)["up"] == true
            && probe(&doc, &down_target)["up"] == false
            && probe(&doc, HOSTILE)["up"].is_boolean()
    });
    assert!(settled, "states not reached within 15s: {doc:#}");
    let ready = test_started.elapsed();

    // The page names no domain of Chromium's own services, so the browser's requests to them
    // (ignored below) cannot be the page's.
    let served = http_get(nginx.port, PAGE).text().to_ascii_lowercase();
    for domain in BROWSER_SERVICE_DOMAINS {
        assert!(
            !served.contains(domain),
            "the page names {domain}:\n{served}"
        );
    }
    let url = nginx.url(PAGE);
    let page_request = format!("GET {url} HTTP/1.1");
    let mut browser_own = Vec::new();
    let mut check_proxied = |run: &ChromiumRun, what: &str| {
        let (service, page) = split_proxied(&run.proxied);
        assert!(
            page.iter().any(|r| r.line == page_request),
            "{what}: the proxy saw no request for the page, so it did not go through it: \
             {:#?}\n--- stderr ---\n{}",
            run.proxied,
            run.stderr
        );
        // Exactly the page, as a navigation; nothing else: no favicon, no resource of any kind.
        assert!(
            page.iter().all(|r| r.line == page_request && r.from_page),
            "{what}: requests other than the page ({page_request:?}): {:#?}",
            run.proxied
        );
        browser_own.extend(service.iter().map(|r| r.line.clone()));
    };

    // 0. The check can fail: a page with an image and a style sheet from elsewhere shows up at
    // the proxy with both. (Its /favicon.ico too, but not always: Chromium asks for the icon
    // after the load event and may exit first, so the page's data: icon is checked in the DOM.)
    let control = chromium(
        nginx.port,
        &nginx.url("/control"),
        &["--dump-dom".to_string()],
    );
    let (_, seen) = split_proxied(&control.proxied);
    for wanted in [
        format!("GET {} HTTP/1.1", nginx.url("/pixel.png")),
        "CONNECT cdn.example.net:443 HTTP/1.1".to_string(),
    ] {
        assert!(
            seen.iter().any(|r| r.line == wanted),
            "control page: the proxy did not see {wanted:?}: {:#?}",
            control.proxied
        );
    }

    // 1. Screenshots, phone and desktop.
    let shots = screenshot_dir();
    let mut timings = Vec::new();
    for (w, h) in [(390u32, 844u32), (1280, 900)] {
        let path = shots.join(format!("status-page-{w}.png"));
        let _ = fs::remove_file(&path);
        let run = chromium(
            nginx.port,
            &url,
            &[
                format!("--screenshot={}", path.display()),
                format!("--window-size={w},{h}"),
            ],
        );
        let bytes = fs::read(&path).unwrap_or_else(|e| {
            panic!(
                "no screenshot at {}: {e}\n--- stderr ---\n{}",
                path.display(),
                run.stderr
            )
        });
        assert_eq!(png_size(&bytes, &path.display().to_string()), (w, h));
        // A blank page compresses to a few hundred bytes; text and badges need more.
        assert!(
            bytes.len() > 5000,
            "{}: {} bytes, blank?",
            path.display(),
            bytes.len()
        );
        check_proxied(&run, &format!("screenshot {w}x{h}"));
        timings.push(run.took);
    }

    // 2. The DOM after rendering.
    let run = chromium(nginx.port, &url, &["--dump-dom".to_string()]);
    check_proxied(&run, "dump-dom");
    timings.push(run.took);
    let dom = run.stdout;
    assert!(dom.contains("<h1>nginx status</h1>"), "{dom}");
    assert!(
        dom.contains(r#"<link rel="icon" href="data:,">"#),
        "no data: icon, so browsers ask nginx for /favicon.ico:\n{dom}"
    );
    assert!(
        !dom.to_ascii_lowercase().contains("<script"),
        "a script element in the DOM:\n{dom}"
    );
    // The hostile URL is a text node inside <code>, as typed.
    assert!(
        dom.contains(&format!("<code>{}</code>", as_dom_text(HOSTILE))),
        "the hostile probe URL is not shown as text:\n{dom}"
    );
    // Every NAME shows the JSON's window requests and level.
    let doc: Value = http_get(nginx.port, "/status_metrics?format=json").json();
    for name in ["api", "web", "quiet"] {
        let loc = location(&doc, name);
        let requests = &loc["window"]["requests"];
        let level = loc["alert_state"]
            .as_str()
            .unwrap_or_else(|| panic!("no alert_state for {name}: {doc:#}"))
            .to_ascii_uppercase();
        let card = card(&dom, name);
        assert!(
            card.contains(&format!("<dd>{requests}</dd>")),
            "{name}: {requests} requests not shown:\n{card}"
        );
        assert!(
            card.contains(&format!("\">{level}</span>")),
            "{name}: level {level} not shown:\n{card}"
        );
    }
    assert!(card(&dom, "api").contains("https://logs.example.com/api"));
    // Every probe shows the JSON's state, in the row of its target.
    for target in [up_target.as_str(), down_target.as_str(), HOSTILE] {
        let word = match probe(&doc, target)["up"].as_bool() {
            Some(true) => "UP",
            Some(false) => "DOWN",
            None => "UNKNOWN",
        };
        let row = probe_row(&dom, target);
        assert!(
            row.contains(&format!("\">{word}</span>")),
            "probe {target}: {word} not shown:\n{row}"
        );
    }
    assert!(probe_row(&dom, &up_target).contains(">UP<"));
    assert!(probe_row(&dom, &down_target).contains(">DOWN<"));
    // The probe of a NAME without status_alert gets the "Probes" card.
    assert!(card(&dom, "Probes").contains(&as_dom_text(HOSTILE)));

    nginx.assert_log_clean();
    eprintln!(
        "browser: states settled after {ready:?}; Chromium runs took {timings:?}; \
         screenshots in {}; Chromium's own requests, not the page's (refused): {browser_own:#?}",
        shots.display()
    );
}

// ---------------------------------------------------------------------------------------------
// The page at scale
// ---------------------------------------------------------------------------------------------

/// NAMEs of the scale test: every one in its own location (set-up time is printed).
const SCALE_NAMES: usize = 10_000;
/// Answer timeout of a JSON scrape of [`SCALE_NAMES`] NAMEs (times the kit's time scale).
const SCALE_SCRAPE_TIMEOUT: Duration = Duration::from_secs(30);
/// The page's size bound at any number of NAMEs.
const PAGE_BUDGET: usize = 300 * 1024;

/// `n-NNNNN` for index `i`.
fn scale_name(i: usize) -> String {
    format!("n-{i:05}")
}

#[test]
fn chromium_shows_ten_thousand_names_firing_first() {
    require_module!();
    require!(program_ready(CHROMIUM));
    // Critical: every 1000th NAME from 7 (all 503, from an upstream of 8 peers, so each card
    // carries a table of them); warning: every 1000th from 507 (10% 5xx, between warn=5% and
    // crit=50%).
    let critical: Vec<usize> = (0..SCALE_NAMES / 1000).map(|k| k * 1000 + 7).collect();
    let warning: Vec<usize> = (0..3).map(|k| k * 1000 + 507).collect();
    let peers: Vec<Upstream> = (0..8).map(|_| Upstream::start()).collect();
    for p in &peers {
        for &i in &critical {
            p.set(&format!("/{}", scale_name(i)), 503, "down");
        }
    }
    let servers: String = peers
        .iter()
        .map(|p| format!("server 127.0.0.1:{}; ", p.port))
        .collect();
    let mut locations = String::with_capacity(SCALE_NAMES * 90);
    for i in 0..SCALE_NAMES {
        let name = scale_name(i);
        let body = if critical.contains(&i) {
            "proxy_pass http://backend;".to_owned()
        } else if warning.contains(&i) {
            "if ($arg_e) { return 503; } return 200;".to_owned()
        } else {
            "return 200;".to_owned()
        };
        locations.push_str(&format!(
            "location = /{name} {{ status_alert {name} window=1m warn=5% crit=50%; {body} }}\n"
        ));
    }
    let block = format!(
        r#"
        status_alert_interval 1s;
        upstream backend {{ {servers}}}
        server {{
            listen 127.0.0.1:{{PORT}};
            {locations}
            location = /status_metrics {{ status_alert off; status_metrics; }}
        }}
        "#
    );
    let started = Instant::now();
    let nginx = Nginx::start(&block, NginxOpts::default());
    let setup = started.elapsed();
    for &i in &critical {
        assert!(hammer(nginx.port, &format!("/{}", scale_name(i)), 30, 2)
            .iter()
            .all(|s| *s == 503));
    }
    for &i in &warning {
        let path = format!("/{}", scale_name(i));
        assert!(hammer(nginx.port, &path, 27, 2).iter().all(|s| *s == 200));
        assert!(hammer(nginx.port, &format!("{path}?e=1"), 3, 1)
            .iter()
            .all(|s| *s == 503));
    }
    let levels = |doc: &Value| {
        let level = |i: &usize| doc["locations"][scale_name(*i)]["alert_state"].clone();
        critical.iter().all(|i| level(i) == "critical")
            && warning.iter().all(|i| level(i) == "warning")
    };
    // One scrape of 10,000 NAMEs on a busy machine may be slow: a generous timeout, and a scrape
    // that fails anyway only means "not yet".
    let mut doc = Value::Null;
    let settled = wait_until(Duration::from_secs(20), || {
        let path = "/status_metrics?format=json";
        match try_http_request_timeout(nginx.port, "GET", path, &[], None, SCALE_SCRAPE_TIMEOUT) {
            Ok(r) => {
                doc = r.json();
                levels(&doc)
            }
            Err(e) => {
                eprintln!("{path}: {e}; asking again");
                false
            }
        }
    });
    assert!(settled, "levels not reached within 20s");
    assert_eq!(
        doc["locations"].as_object().map(|o| o.len()),
        Some(SCALE_NAMES)
    );

    // The page as nginx serves it: within the bound, firing cards before the compact table.
    let asked = Instant::now();
    let served = http_get(nginx.port, PAGE);
    let page_took = asked.elapsed();
    assert_eq!(served.status, 200);
    let html = served.text();
    assert!(
        html.len() <= PAGE_BUDGET,
        "the page is {} bytes at {SCALE_NAMES} NAMEs",
        html.len()
    );
    // Each critical card lists the 8 peers; the warning cards (no upstream) and rows none.
    assert_eq!(html.matches("<h3>Upstream peers").count(), critical.len());
    assert_eq!(
        html.matches("<td data-label=\"Peer\">").count(),
        critical.len() * peers.len()
    );

    // Chromium: a desktop screenshot, and the DOM after rendering.
    let url = nginx.url(PAGE);
    let shot = screenshot_dir().join("status-page-10000.png");
    let run = chromium(
        nginx.port,
        &url,
        &[
            format!("--screenshot={}", shot.display()),
            "--window-size=1280,900".to_string(),
        ],
    );
    let bytes = fs::read(&shot).unwrap_or_else(|e| panic!("{}: {e}", shot.display()));
    assert_eq!(png_size(&bytes, "the screenshot"), (1280, 900));
    let shot_took = run.took;
    let run = chromium(nginx.port, &url, &["--dump-dom".to_string()]);
    let dom = run.stdout;
    let table = dom
        .find("Other NAMEs (")
        .unwrap_or_else(|| panic!("no compact table in the DOM:\n{}", &dom[..4000]));
    let first_card = |i: &usize| {
        dom.find(&format!("<h2>{}</h2>", scale_name(*i)))
            .unwrap_or_else(|| panic!("no card for {}", scale_name(*i)))
    };
    let last_critical = critical.iter().map(first_card).max().unwrap();
    let first_warning = warning.iter().map(first_card).min().unwrap();
    assert!(last_critical < first_warning && first_warning < table);
    // Nothing but the firing NAMEs' cards above the table (whose own section opens there).
    let above = &dom[..table];
    assert_eq!(above.matches("<section class=\"card ").count(), 13 + 1);
    assert_eq!(
        above.matches("<section class=\"card crit\"").count()
            + above.matches("<section class=\"card warn\"").count(),
        13
    );
    // The rows: OK NAMEs, each a link that lists it alone.
    assert!(dom[table..].contains("<a href=\"?name=%5En-00001%24\">n-00001</a>"));

    // ?state=firing: the 13 cards only; ?state=warning: 3; ?state=ok: no card, the table.
    let cards = |query: &str| {
        let r = http_get(nginx.port, &format!("{PAGE}&{query}"));
        assert_eq!(r.status, 200, "{query}: {}", r.text());
        let text = r.text();
        assert!(text.len() <= PAGE_BUDGET, "{query}: {} bytes", text.len());
        (
            text.matches("<section class=\"card crit\"").count(),
            text.matches("<section class=\"card warn\"").count(),
            text.contains("Other NAMEs ("),
        )
    };
    assert_eq!(cards("state=firing"), (10, 3, false));
    assert_eq!(cards("state=warning"), (0, 3, false));
    assert_eq!(cards("state=ok"), (0, 0, true));
    // ?name=: a NAME alone gets its card; a few dozen too; a hundred go compact.
    assert_eq!(cards("name=%5En-00001%24"), (0, 0, false));
    let one = http_get(nginx.port, &format!("{PAGE}&name=%5En-00001%24")).text();
    assert!(one.contains("<h2>n-00001</h2>") && !one.contains("n-00002"));
    assert_eq!(
        cards("name=%5En-0000"),
        (1, 0, false),
        "n-00000..n-00009, n-00007 critical"
    );
    assert!(cards("name=%5En-001").2, "100 NAMEs: compact");
    // The compact table on a phone: ?state=ok puts it at the top.
    let phone = screenshot_dir().join("status-page-10000-ok-390.png");
    chromium(
        nginx.port,
        &format!("{url}&state=ok"),
        &[
            format!("--screenshot={}", phone.display()),
            "--window-size=390,844".to_string(),
        ],
    );
    let bytes = fs::read(&phone).unwrap_or_else(|e| panic!("{}: {e}", phone.display()));
    assert_eq!(png_size(&bytes, "the phone screenshot"), (390, 844));
    // In Chromium, the filtered page.
    let run = chromium(
        nginx.port,
        &format!("{url}&name=%5En-0000&state=ok"),
        &["--dump-dom".to_string()],
    );
    assert!(run
        .stdout
        .contains("name matches <code>^n-0000</code>, state ok: 9 of 10000 NAMEs"));
    assert_eq!(run.stdout.matches("<section class=\"card ok\"").count(), 9);
    // A bad pattern or state: 400 with one line saying why.
    let bad = http_get(nginx.port, &format!("{PAGE}&name=n-(0"));
    assert_eq!(bad.status, 400);
    assert_eq!(
        bad.text(),
        "invalid name pattern \"n-(0\": unclosed group\n"
    );
    let bad = http_get(nginx.port, &format!("{PAGE}&state=down"));
    assert_eq!(bad.status, 400);
    assert!(bad.text().starts_with("invalid state \"down\""));
    // JSON and Prometheus ignore the page's filters: every NAME, always.
    let all = http_get(
        nginx.port,
        "/status_metrics?format=json&name=nothing&state=ok",
    )
    .json();
    assert_eq!(
        all["locations"].as_object().map(|o| o.len()),
        Some(SCALE_NAMES)
    );

    nginx.assert_log_clean();
    eprintln!(
        "browser at scale: {SCALE_NAMES} NAMEs, nginx started in {setup:?}; page {} bytes \
         served in {page_took:?}; screenshot {} in {shot_took:?}",
        html.len(),
        shot.display()
    );
}
