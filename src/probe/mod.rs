//! Active health probes: the state machine that turns [`ProbeResult`]s into DOWN / UP
//! transitions ([`apply`]), and [`ProbeRunner`], the former thread-per-target runner.
//!
//! Probes now run on nginx's event loop in the evaluating worker (`probe_net.rs`), which hands
//! its results to [`apply`] exactly as the threads' results were. `ProbeRunner` is no longer
//! started (the helper process gets no probes); it stays until `sidecar.rs` drops its probe
//! plumbing, so that change can merge separately.


pub mod http;
#[cfg(not(test))]
pub(crate) mod mark_down;
#[cfg(not(test))]
pub(crate) mod net;
pub mod peer_down;
#[cfg(not(test))]
pub(crate) mod upstream;

use core::sync::atomic::Ordering::Relaxed;
use std::io::{self, Read};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, Receiver, RecvTimeoutError, Sender};

use crate::conf::probe_spec::{ProbeSpec, Scheme};
use crate::zone::ProbeShared;

/// Most of a response body a probe reads (and discards).
const MAX_BODY: u64 = 64 * 1024;
/// The first probe of each target starts within this much of process start (spread by jitter).
const MAX_START_DELAY_MS: u64 = 1000;

/// Why a probe failed. [`Reason::ALL`] is the one list of reasons: the zone's counters, the
/// metric labels and the status page follow its order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// Connection refused.
    Refused = 0,
    /// No answer within the timeout.
    Timeout = 1,
    /// An unexpected HTTP status.
    Status = 2,
    /// Connection reset or closed early.
    Reset = 3,
    /// TLS handshake or certificate error.
    Tls = 4,
    /// Host name did not resolve.
    Dns = 5,
}

impl Reason {
    /// Words used in alert titles.
    pub fn words(self, status: Option<u16>) -> String {
        match self {
            Reason::Refused => "connection refused".into(),
            Reason::Timeout => "timed out".into(),
            Reason::Status => format!("unexpected status {}", status.unwrap_or(0)),
            Reason::Reset => "connection reset".into(),
            Reason::Tls => "TLS error".into(),
            Reason::Dns => "DNS lookup failed".into(),
        }
    }

    /// How many reasons there are.
    pub const COUNT: usize = Reason::ALL.len();

    /// Every reason, in the order of their values.
    pub const ALL: [Reason; 6] = [
        Reason::Refused,
        Reason::Timeout,
        Reason::Status,
        Reason::Reset,
        Reason::Tls,
        Reason::Dns,
    ];

    /// The `reason` label of the failure metrics and the key in the JSON output.
    pub fn label(self) -> &'static str {
        match self {
            Reason::Refused => "refused",
            Reason::Timeout => "timeout",
            Reason::Status => "status",
            Reason::Reset => "reset",
            Reason::Tls => "tls",
            Reason::Dns => "dns",
        }
    }

    /// The reason with value `i`.
    pub fn from_index(i: u32) -> Option<Reason> {
        Reason::ALL.get(i as usize).copied()
    }
}

/// One probe's result.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeResult {
    /// Index of the target in the configuration.
    pub index: usize,
    /// `None` on success, else why it failed.
    pub failure: Option<Reason>,
    /// HTTP status, if a response arrived.
    pub status: Option<u16>,
    /// How long the probe took.
    pub duration: Duration,
}

/// A probe target's state change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProbeTransition {
    /// Became DOWN after `fails` consecutive failures.
    Down {
        /// Last failure's reason.
        reason: Reason,
    },
    /// Came back UP after `passes` consecutive successes.
    Up {
        /// When it went down, ms since the epoch.
        down_since_ms: u64,
    },
}

const UNKNOWN: u32 = 0;
const UP: u32 = 1;
const DOWN: u32 = 2;

/// Applies a result to the target's shared state; returns the transition to announce, if any.
/// No UP is announced for the first result after start-up (unknown -> up).
pub fn apply(
    shared: &ProbeShared,
    spec: &ProbeSpec,
    r: &ProbeResult,
    now_ms: u64,
) -> Option<ProbeTransition> {
    shared
        .last_duration_us
        .store(r.duration.as_micros() as u64, Relaxed);
    shared
        .last_status
        .store(r.status.unwrap_or(0) as u32, Relaxed);
    let state = shared.state.load(Relaxed);
    match r.failure {
        None => {
            shared.consecutive_failures.store(0, Relaxed);
            let ok = shared.consecutive_successes.fetch_add(1, Relaxed) + 1;
            match state {
                UNKNOWN => {
                    set_state(shared, UNKNOWN, UP, now_ms);
                    None
                }
                DOWN if ok >= spec.passes => {
                    let down_since_ms = shared.since_ms.load(Relaxed);
                    let up = set_state(shared, DOWN, UP, now_ms);
                    if up {
                        // nginx_probe_down_seconds_total keeps the ended down period.
                        shared.book_down_time(down_since_ms, now_ms);
                    }
                    up.then_some(ProbeTransition::Up { down_since_ms })
                }
                _ => None,
            }
        }
        Some(reason) => {
            shared.consecutive_successes.store(0, Relaxed);
            shared.failures[reason as usize].fetch_add(1, Relaxed);
            shared.last_reason.store(reason as u32 + 1, Relaxed);
            let failed = shared.consecutive_failures.fetch_add(1, Relaxed) + 1;
            if state != DOWN && failed >= spec.fails {
                set_state(shared, state, DOWN, now_ms).then_some(ProbeTransition::Down { reason })
            } else {
                None
            }
        }
    }
}

/// Moves `from` -> `to` by compare-and-swap, so that only one evaluator announces it.
fn set_state(shared: &ProbeShared, from: u32, to: u32, now_ms: u64) -> bool {
    let won = shared
        .state
        .compare_exchange(from, to, Relaxed, Relaxed)
        .is_ok();
    if won {
        shared.since_ms.store(now_ms, Relaxed);
    }
    won
}

/// Whether the target is up: `None` until its first result.
pub fn is_up(shared: &ProbeShared) -> Option<bool> {
    match shared.state.load(Relaxed) {
        UP => Some(true),
        DOWN => Some(false),
        _ => None,
    }
}

/// Background probe threads, one per target.
pub struct ProbeRunner {
    stop: Sender<()>,
    results: Receiver<ProbeResult>,
    threads: Vec<JoinHandle<()>>,
}

impl ProbeRunner {
    /// Starts one thread per target.
    pub fn start(specs: Vec<ProbeSpec>) -> io::Result<ProbeRunner> {
        // Nothing is ever sent on `stop`; dropping the sender wakes every thread at once.
        let (stop, stop_rx) = bounded::<()>(0);
        let (tx, results) = bounded(1024);
        let count = specs.len().max(1) as u64;
        let mut threads = Vec::new();
        for (index, spec) in specs.into_iter().enumerate() {
            let (stop_rx, tx) = (stop_rx.clone(), tx.clone());
            // Spread first probes over the start window so targets do not fire together.
            let offset = MAX_START_DELAY_MS * index as u64 / count + jitter_ms(100);
            let handle = std::thread::Builder::new()
                .name(format!("status-alert-probe-{index}"))
                .spawn(move || run_target(index, spec, offset, stop_rx, tx))?;
            threads.push(handle);
        }
        Ok(ProbeRunner {
            stop,
            results,
            threads,
        })
    }

    /// Results received since the last call.
    pub fn results(&self) -> Vec<ProbeResult> {
        self.results.try_iter().collect()
    }

    /// Stops the threads without waiting for a probe in flight (it ends at its own timeout).
    pub fn stop(self) {
        drop(self.stop);
        // Threads are detached: a probe in flight may take up to its timeout to notice.
        drop(self.threads);
    }
}

/// Up to `max_ms` of jitter, so that targets with equal intervals do not probe in step.
fn jitter_ms(max_ms: u64) -> u64 {
    if max_ms == 0 {
        0
    } else {
        fastrand::u64(..max_ms)
    }
}

fn run_target(
    index: usize,
    spec: ProbeSpec,
    first_delay_ms: u64,
    stop: Receiver<()>,
    results: Sender<ProbeResult>,
) {
    let mut delay = Duration::from_millis(first_delay_ms);
    let agent = http_agent(&spec);
    loop {
        match stop.recv_timeout(delay) {
            Err(RecvTimeoutError::Timeout) => {}
            _ => return,
        }
        let started = Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| probe_once(&spec, &agent)))
                .unwrap_or((Some(Reason::Reset), None));
        let duration = started.elapsed();
        let result = ProbeResult {
            index,
            failure: outcome.0,
            status: outcome.1,
            duration,
        };
        // A full channel means the worker is not draining (exiting): the result is dropped.
        let _ = results.try_send(result);
        // Small jitter keeps targets with equal intervals from lining up again.
        let interval = spec.interval_ms + jitter_ms(spec.interval_ms / 50 + 1);
        delay = Duration::from_millis(interval).saturating_sub(duration);
    }
}

fn http_agent(spec: &ProbeSpec) -> ureq::Agent {
    let tls = ureq::tls::TlsConfig::builder()
        .disable_verification(!spec.tls_verify)
        .build();
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(spec.timeout_ms)))
        .http_status_as_error(false)
        .max_redirects(0)
        // A fresh connection per probe: a pooled one would hide a refused or reset listener.
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .user_agent(concat!("nginx-status-alert/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .into()
}

/// Runs one probe; returns (failure, HTTP status).
fn probe_once(spec: &ProbeSpec, agent: &ureq::Agent) -> (Option<Reason>, Option<u16>) {
    let t = &spec.target;
    match t.scheme {
        Scheme::Tcp => (tcp_probe(&t.host, t.port, spec.timeout_ms).err(), None),
        Scheme::Http | Scheme::Https => {
            let url = format!(
                "{}://{}{}",
                if t.scheme == Scheme::Https {
                    "https"
                } else {
                    "http"
                },
                t.authority(),
                t.path
            );
            let mut req = agent.get(&url);
            if let Some(userinfo) = &t.userinfo {
                req = req.header(
                    "Authorization",
                    format!("Basic {}", base64(userinfo.as_bytes())),
                );
            }
            match req.call() {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let _ = resp
                        .into_body()
                        .into_reader()
                        .take(MAX_BODY)
                        .read_to_end(&mut Vec::new());
                    if spec.expects(status) {
                        (None, Some(status))
                    } else {
                        (Some(Reason::Status), Some(status))
                    }
                }
                Err(e) => (Some(classify_ureq(&e)), None),
            }
        }
    }
}

fn tcp_probe(host: &str, port: u16, timeout_ms: u64) -> Result<(), Reason> {
    let deadline = Instant::now() + Duration::from_millis(timeout_ms);
    let addrs = resolve_within(host, port, Duration::from_millis(timeout_ms), system_lookup)?;
    let mut last = Reason::Refused;
    for addr in addrs {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Reason::Timeout);
        }
        match TcpStream::connect_timeout(&addr, left) {
            Ok(_) => return Ok(()),
            Err(e) => last = classify_io(&e),
        }
    }
    Err(last)
}

type Lookup = fn(&str, u16) -> io::Result<Vec<SocketAddr>>;

fn system_lookup(host: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
    Ok((host, port).to_socket_addrs()?.collect())
}

/// Resolves `host` within `timeout`, so that a resolver that never answers fails the probe as
/// `dns` in time instead of stalling it. `getaddrinfo` cannot be cancelled: a lookup that runs
/// over is left to finish on its own thread, which then exits (the send finds nobody waiting).
/// IP literals, the common case for upstreams, resolve without a thread.
fn resolve_within(
    host: &str,
    port: u16,
    timeout: Duration,
    lookup: Lookup,
) -> Result<Vec<SocketAddr>, Reason> {
    let addrs = if let Ok(ip) = host.parse::<std::net::IpAddr>() {
        vec![SocketAddr::new(ip, port)]
    } else {
        let (tx, rx) = bounded(1);
        let name = host.to_owned();
        std::thread::Builder::new()
            .name("status-alert-dns".into())
            .spawn(move || {
                let _ = tx.send(lookup(&name, port));
            })
            .map_err(|_| Reason::Dns)?;
        match rx.recv_timeout(timeout) {
            Ok(Ok(addrs)) => addrs,
            _ => return Err(Reason::Dns),
        }
    };
    if addrs.is_empty() {
        return Err(Reason::Dns);
    }
    Ok(addrs)
}

fn classify_io(e: &io::Error) -> Reason {
    use io::ErrorKind::*;
    match e.kind() {
        ConnectionRefused => Reason::Refused,
        TimedOut | WouldBlock => Reason::Timeout,
        _ => Reason::Reset,
    }
}

fn classify_ureq(e: &ureq::Error) -> Reason {
    match e {
        ureq::Error::Io(io) => classify_io(io),
        ureq::Error::Timeout(ureq::Timeout::Resolve) => Reason::Dns,
        ureq::Error::Timeout(_) => Reason::Timeout,
        ureq::Error::HostNotFound => Reason::Dns,
        ureq::Error::ConnectionFailed => Reason::Refused,
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::TlsRequired => Reason::Tls,
        _ => Reason::Reset,
    }
}

/// Standard base64 for basic authentication (RFC 4648 with padding).
fn base64(input: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::probe_spec::parse;
    use std::io::Write;
    use std::net::TcpListener;

    fn shared() -> Box<ProbeShared> {
        // SAFETY: all-zero bytes are a valid, unknown probe state.
        unsafe { Box::new(core::mem::zeroed()) }
    }

    fn spec(args: &[&str]) -> ProbeSpec {
        let v: Vec<String> = args.iter().map(|s| s.to_string()).collect();
        parse(&v, false).unwrap()
    }

    fn ok() -> ProbeResult {
        ProbeResult {
            index: 0,
            failure: None,
            status: Some(200),
            duration: Duration::from_millis(3),
        }
    }

    fn fail(reason: Reason) -> ProbeResult {
        ProbeResult {
            failure: Some(reason),
            status: None,
            ..ok()
        }
    }

    #[test]
    fn no_up_at_startup_and_down_after_fails() {
        let s = shared();
        let sp = spec(&["http://h/", "fails=2", "passes=2"]);
        assert_eq!(apply(&s, &sp, &ok(), 1), None);
        assert_eq!(s.state.load(Relaxed), UP);
        assert_eq!(apply(&s, &sp, &fail(Reason::Refused), 2), None);
        assert_eq!(
            apply(&s, &sp, &fail(Reason::Timeout), 3),
            Some(ProbeTransition::Down {
                reason: Reason::Timeout
            })
        );
        assert_eq!(
            apply(&s, &sp, &fail(Reason::Timeout), 4),
            None,
            "one DOWN per outage"
        );
        assert_eq!(apply(&s, &sp, &ok(), 5), None);
        assert_eq!(
            apply(&s, &sp, &ok(), 6),
            Some(ProbeTransition::Up { down_since_ms: 3 })
        );
        assert_eq!(s.failures[Reason::Refused as usize].load(Relaxed), 1);
        assert_eq!(s.failures[Reason::Timeout as usize].load(Relaxed), 2);
        assert_eq!(s.last_reason.load(Relaxed), Reason::Timeout as u32 + 1);
        assert_eq!(is_up(&s), Some(true));
    }

    #[test]
    fn down_from_the_start_is_announced() {
        let s = shared();
        let sp = spec(&["tcp://h:1"]);
        assert!(matches!(
            apply(&s, &sp, &fail(Reason::Refused), 1),
            Some(ProbeTransition::Down { .. })
        ));
    }

    #[test]
    fn reasons_match_metric_labels() {
        let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(
            labels,
            ["refused", "timeout", "status", "reset", "tls", "dns"]
        );
        for (i, r) in Reason::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i, "ALL is in the order of the values");
        }
    }

    #[test]
    fn base64_rfc4648() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"user:pass"), "dXNlcjpwYXNz");
    }

    #[test]
    fn tcp_refused_and_ok() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        assert_eq!(tcp_probe("127.0.0.1", port, 1000), Ok(()));
        drop(l);
        assert_eq!(tcp_probe("127.0.0.1", port, 1000), Err(Reason::Refused));
        assert_eq!(
            tcp_probe("no-such-host.invalid", 80, 1000),
            Err(Reason::Dns)
        );
    }

    #[test]
    fn a_lookup_that_never_answers_fails_as_dns_within_the_timeout() {
        fn hanging(_: &str, _: u16) -> io::Result<Vec<SocketAddr>> {
            std::thread::sleep(Duration::from_secs(3));
            Ok(vec![])
        }
        fn answers(_: &str, port: u16) -> io::Result<Vec<SocketAddr>> {
            Ok(vec![SocketAddr::from(([127, 0, 0, 1], port))])
        }
        let started = Instant::now();
        let r = resolve_within("db.internal", 5432, Duration::from_millis(200), hanging);
        assert_eq!(r, Err(Reason::Dns));
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        let r = resolve_within("db.internal", 5432, Duration::from_millis(200), answers);
        assert_eq!(r, Ok(vec![SocketAddr::from(([127, 0, 0, 1], 5432))]));
        // IP literals never reach the lookup.
        let r = resolve_within("10.0.0.5", 80, Duration::from_millis(200), hanging);
        assert_eq!(r, Ok(vec![SocketAddr::from(([10, 0, 0, 5], 80))]));
        let r = resolve_within("::1", 80, Duration::ZERO, hanging);
        assert_eq!(r, Ok(vec!["[::1]:80".parse().unwrap()]));
    }

    #[test]
    fn http_status_and_timeout() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            // First connection: answer 503. Second: accept and never answer.
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = c.read(&mut buf);
            let _ = c.write_all(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n");
            let (c2, _) = l.accept().unwrap();
            std::thread::sleep(Duration::from_millis(800));
            drop(c2);
        });
        let sp = spec(&["http://127.0.0.1:1/health", "timeout=300ms", "interval=1s"]);
        let mut sp = sp;
        sp.target.port = port;
        let agent = http_agent(&sp);
        assert_eq!(probe_once(&sp, &agent), (Some(Reason::Status), Some(503)));
        let t = Instant::now();
        assert_eq!(probe_once(&sp, &agent), (Some(Reason::Timeout), None));
        assert!(
            t.elapsed() < Duration::from_millis(700),
            "{:?}",
            t.elapsed()
        );
        server.join().unwrap();
    }

    #[test]
    fn runner_reports_results_and_stops() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let sp = spec(&[
            &format!("tcp://127.0.0.1:{port}"),
            "interval=1s",
            "timeout=200ms",
        ]);
        let runner = ProbeRunner::start(vec![sp]).unwrap();
        let deadline = Instant::now() + Duration::from_secs(3);
        let mut got = Vec::new();
        while got.is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
            got = runner.results();
        }
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].failure, None);
        runner.stop();
    }
}
