//! Fake servers on 127.0.0.1:0 that nginx talks to: a scriptable upstream ([`Upstream`]) and a
//! listener that accepts and never answers ([`hanging_listener`]), on a small threaded HTTP/1.x
//! server core that the webhook receiver uses too (why our own: see [`crate::wire`]).

use crate::env::lock;
use crate::wire::{body_kind, connection_keeps_alive, find_header, invalid, read_body, read_head};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// A request as received by [`Upstream`].
#[derive(Clone, Debug)]
pub struct ReceivedRequest {
    pub at: Instant,
    pub method: String,
    /// Request target as sent, including any query string.
    pub target: String,
    pub version: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// Target without the query string.
    pub fn path(&self) -> &str {
        self.target.split('?').next().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

pub(crate) enum Reply {
    Send {
        status: u16,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
        delay: Duration,
    },
    /// Never answer; hold the connection until the peer closes it or the server stops.
    Hang,
}

pub(crate) type Handler = Arc<dyn Fn(&ReceivedRequest) -> Reply + Send + Sync>;

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

fn read_request<R: BufRead>(r: &mut R, w: &mut TcpStream) -> io::Result<Option<ReceivedRequest>> {
    let Some((start, headers)) = read_head(r)? else {
        return Ok(None);
    };
    let at = Instant::now();
    let mut parts = start.split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts
        .next()
        .ok_or_else(|| invalid(format!("bad request line {start:?}")))?;
    let version = parts.next().unwrap_or("HTTP/1.0").to_string();
    let expects_continue = find_header(&headers, "expect")
        .map(|v| v.eq_ignore_ascii_case("100-continue"))
        .unwrap_or(false);
    if expects_continue {
        w.write_all(b"HTTP/1.1 100 Continue\r\n\r\n")?;
    }
    let body = read_body(r, body_kind(&headers, false)?)?;
    Ok(Some(ReceivedRequest {
        at,
        method,
        target: target.to_string(),
        version,
        headers,
        body,
    }))
}

fn write_response(
    w: &mut TcpStream,
    status: u16,
    headers: &[(String, String)],
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> io::Result<()> {
    let mut out = format!("HTTP/1.1 {status} {}\r\n", reason(status));
    for (k, v) in headers {
        // Framing is ours to decide; a scripted header must not contradict it.
        let k_lower = k.to_ascii_lowercase();
        if k_lower != "content-length" && k_lower != "connection" && k_lower != "transfer-encoding"
        {
            let _ = write!(out, "{k}: {v}\r\n");
        }
    }
    let bodiless = status == 204 || status == 304 || (100..200).contains(&status);
    if !bodiless {
        let _ = write!(out, "Content-Length: {}\r\n", body.len());
    }
    let _ = write!(
        out,
        "Connection: {}\r\n\r\n",
        if keep_alive { "keep-alive" } else { "close" }
    );
    let mut buf = out.into_bytes();
    if !bodiless && !head_only {
        buf.extend_from_slice(body);
    }
    w.write_all(&buf)?;
    w.flush()
}

/// Sleeps `d` in small steps; false if the server was stopped meanwhile.
fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if stop.load(Ordering::SeqCst) {
            return false;
        }
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        thread::sleep((deadline - now).min(Duration::from_millis(20)));
    }
}

fn hang(stream: &TcpStream, stop: &AtomicBool) {
    // Poll instead of blocking so the thread ends when the client gives up (EOF) or the
    // server stops, rather than piling up one stuck thread per timed-out request.
    let _ = stream.set_read_timeout(Some(Duration::from_millis(50)));
    let mut buf = [0u8; 1];
    while !stop.load(Ordering::SeqCst) {
        match stream.peek(&mut buf) {
            Ok(0) => return,
            // Data we deliberately never read; don't spin on it.
            Ok(_) => thread::sleep(Duration::from_millis(50)),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(_) => return,
        }
    }
}

type ConnRegistry = Arc<Mutex<HashMap<u64, TcpStream>>>;

fn serve_connection(stream: TcpStream, handler: Handler, stop: Arc<AtomicBool>) {
    let _ = stream.set_nodelay(true);
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(read_half);
    let mut writer = stream;
    while !stop.load(Ordering::SeqCst) {
        let req = match read_request(&mut reader, &mut writer) {
            Ok(Some(req)) => req,
            _ => break,
        };
        let keep = connection_keeps_alive(&req.version, &req.headers);
        match handler(&req) {
            Reply::Hang => {
                hang(&writer, &stop);
                break;
            }
            Reply::Send {
                status,
                headers,
                body,
                delay,
            } => {
                if !sleep_unless_stopped(delay, &stop) {
                    break;
                }
                let head_only = req.method.eq_ignore_ascii_case("HEAD");
                if write_response(&mut writer, status, &headers, &body, keep, head_only).is_err()
                    || !keep
                {
                    break;
                }
            }
        }
    }
    // The registry holds a clone of this socket, so dropping ours would not close it.
    let _ = writer.shutdown(Shutdown::Both);
}

/// Accept loop + one thread per connection; stops on drop.
pub(crate) struct ServerCore {
    pub(crate) port: u16,
    /// Where it listens.
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    conns: ConnRegistry,
    accept_thread: Option<JoinHandle<()>>,
}

impl ServerCore {
    pub(crate) fn start(name: &str, handler: Handler) -> ServerCore {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        ServerCore::start_on(name, handler, any).expect("test server: bind 127.0.0.1:0")
    }

    /// A server listening on `addr` (port 0: any free port).
    pub(crate) fn start_on(
        name: &str,
        handler: Handler,
        addr: SocketAddr,
    ) -> std::io::Result<ServerCore> {
        let listener = TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let port = addr.port();
        let stop = Arc::new(AtomicBool::new(false));
        let conns: ConnRegistry = Arc::new(Mutex::new(HashMap::new()));
        let (stop2, conns2) = (stop.clone(), conns.clone());
        let thread_name = format!("{name}-{port}");
        let accept_thread = thread::Builder::new()
            .name(thread_name.clone())
            .spawn(move || {
                let mut next_id = 0u64;
                // Blocking accept keeps per-connection latency at zero (polling would add up
                // to a poll interval to every new connection nginx makes); Drop wakes it with
                // a connection to itself.
                for conn in listener.incoming() {
                    if stop2.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = conn else {
                        thread::sleep(Duration::from_millis(10));
                        continue;
                    };
                    let Ok(clone) = stream.try_clone() else {
                        continue;
                    };
                    next_id += 1;
                    let id = next_id;
                    lock(&conns2).insert(id, clone);
                    let (handler, stop3, conns3) = (handler.clone(), stop2.clone(), conns2.clone());
                    let spawned = thread::Builder::new()
                        .name(format!("{thread_name}-c{id}"))
                        .spawn(move || {
                            serve_connection(stream, handler, stop3);
                            lock(&conns3).remove(&id);
                        });
                    if spawned.is_err() {
                        lock(&conns2).remove(&id);
                    }
                }
            })
            .expect("spawn test server accept thread");
        Ok(ServerCore {
            port,
            addr,
            stop,
            conns,
            accept_thread: Some(accept_thread),
        })
    }
}

fn wake_and_join(addr: SocketAddr, stop: &AtomicBool, thread: Option<JoinHandle<()>>) {
    stop.store(true, Ordering::SeqCst);
    let woke = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok();
    if let Some(t) = thread {
        // If the wake-up connection failed the accept thread may block forever; detach it
        // rather than hang the test.
        if woke {
            let _ = t.join();
        }
    }
}

impl Drop for ServerCore {
    fn drop(&mut self) {
        wake_and_join(self.addr, &self.stop, self.accept_thread.take());
        // Unblock connection threads sitting in read().
        for stream in lock(&self.conns).values() {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

#[derive(Clone, Debug)]
struct Route {
    status: u16,
    body: String,
    delay: Duration,
    headers: Vec<(String, String)>,
}

impl Default for Route {
    fn default() -> Self {
        Route {
            status: 200,
            body: "ok".to_string(),
            delay: Duration::ZERO,
            headers: Vec::new(),
        }
    }
}

#[derive(Default)]
struct UpstreamState {
    routes: HashMap<String, Route>,
    hits: HashMap<String, usize>,
    requests: Vec<ReceivedRequest>,
}

/// A threaded HTTP/1.x backend on 127.0.0.1 whose per-path answers can be changed while it
/// runs. Unknown paths answer 200 "ok". Paths are matched without the query string. Supports
/// HTTP/1.1 keep-alive and HTTP/1.0 (close, or keep-alive when asked). Stops on drop.
pub struct Upstream {
    pub port: u16,
    state: Arc<Mutex<UpstreamState>>,
    _server: ServerCore,
}

impl Upstream {
    pub fn start() -> Upstream {
        Upstream::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).expect("upstream: bind")
    }

    /// An upstream listening on `addr` (another loopback address, say 127.0.0.2, with the port
    /// of one on 127.0.0.1); port 0 takes any free port.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Upstream> {
        let state = Arc::new(Mutex::new(UpstreamState::default()));
        let st = state.clone();
        let handler: Handler = Arc::new(move |req: &ReceivedRequest| {
            let mut st = lock(&st);
            *st.hits.entry(req.path().to_string()).or_default() += 1;
            st.requests.push(req.clone());
            let route = st.routes.get(req.path()).cloned().unwrap_or_default();
            let mut headers = route.headers;
            if find_header(&headers, "content-type").is_none() {
                headers.push(("Content-Type".to_string(), "text/plain".to_string()));
            }
            Reply::Send {
                status: route.status,
                headers,
                body: route.body.into_bytes(),
                delay: route.delay,
            }
        });
        let server = ServerCore::start_on("upstream", handler, addr)?;
        Ok(Upstream {
            port: server.port,
            state,
            _server: server,
        })
    }

    /// Answer `path` with `status` and `body` from now on (the delay is kept).
    pub fn set(&self, path: &str, status: u16, body: &str) {
        let mut st = lock(&self.state);
        let route = st.routes.entry(path.to_string()).or_default();
        route.status = status;
        route.body = body.to_string();
    }

    /// Wait `delay` before answering `path` (the request counts as a hit on arrival).
    pub fn set_delay(&self, path: &str, delay: Duration) {
        lock(&self.state)
            .routes
            .entry(path.to_string())
            .or_default()
            .delay = delay;
    }

    /// Extra response headers for `path` (framing headers are ignored).
    pub fn set_headers(&self, path: &str, headers: &[(&str, &str)]) {
        let headers = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        lock(&self.state)
            .routes
            .entry(path.to_string())
            .or_default()
            .headers = headers;
    }

    /// Requests received for `path` so far.
    pub fn hits(&self, path: &str) -> usize {
        lock(&self.state).hits.get(path).copied().unwrap_or(0)
    }

    /// Requests received for all paths.
    pub fn total_hits(&self) -> usize {
        lock(&self.state).requests.len()
    }

    /// Every request received, in arrival order.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state).requests.clone()
    }

    /// `http://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

/// Accepts TCP connections and never answers, keeping them open until dropped.
pub struct HangingListener {
    pub port: u16,
    stop: Arc<AtomicBool>,
    held: Arc<Mutex<Vec<(Instant, TcpStream)>>>,
    thread: Option<JoinHandle<()>>,
}

impl HangingListener {
    /// How many connections were accepted (and are being held).
    pub fn accepted(&self) -> usize {
        lock(&self.held).len()
    }

    /// When each connection was accepted, in order.
    pub fn accepted_at(&self) -> Vec<Instant> {
        lock(&self.held).iter().map(|(at, _)| *at).collect()
    }
}

impl Drop for HangingListener {
    fn drop(&mut self) {
        wake_and_join(
            SocketAddr::from(([127, 0, 0, 1], self.port)),
            &self.stop,
            self.thread.take(),
        );
        lock(&self.held).clear();
    }
}

/// A listener that accepts and then stays silent: `(port, handle)`; closes when dropped.
pub fn hanging_listener() -> (u16, HangingListener) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("hanging listener: bind");
    let port = listener
        .local_addr()
        .expect("hanging listener: local_addr")
        .port();
    let stop = Arc::new(AtomicBool::new(false));
    let held = Arc::new(Mutex::new(Vec::new()));
    let (stop2, held2) = (stop.clone(), held.clone());
    let thread = thread::Builder::new()
        .name(format!("hanging-{port}"))
        .spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                if let Ok(stream) = conn {
                    lock(&held2).push((Instant::now(), stream));
                }
            }
        })
        .expect("spawn hanging listener thread");
    (
        port,
        HangingListener {
            port,
            stop,
            held,
            thread: Some(thread),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{hammer, http_get, http_request, try_http_request_timeout, RawConnection};
    use std::io::Read;

    #[test]
    fn upstream_routes_hits_delay_and_keepalive() {
        let up = Upstream::start();
        let resp = http_get(up.port, "/anything?x=1");
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
        assert_eq!(up.hits("/anything"), 1);

        up.set("/err", 503, "down");
        up.set_headers("/err", &[("Retry-After", "3")]);
        let resp = http_get(up.port, "/err");
        assert_eq!((resp.status, resp.text().as_str()), (503, "down"));
        assert_eq!(resp.header("RETRY-AFTER"), Some("3"));
        up.set("/err", 200, "back");
        assert_eq!(http_get(up.port, "/err").text(), "back");
        assert_eq!(up.hits("/err"), 2);

        up.set_delay("/slow", Duration::from_millis(300));
        let t = Instant::now();
        assert_eq!(http_get(up.port, "/slow").status, 200);
        assert!(
            t.elapsed() >= Duration::from_millis(300),
            "{:?}",
            t.elapsed()
        );

        let head = http_request(up.port, "HEAD", "/err", &[], None);
        assert_eq!(
            (head.status, head.header("content-length")),
            (200, Some("4"))
        );
        assert!(head.body.is_empty());

        let post = http_request(up.port, "POST", "/p", &[], Some(b"payload"));
        assert_eq!(post.status, 200);
        assert_eq!(up.requests().last().unwrap().body, b"payload");

        // Keep-alive: five requests on one connection.
        let mut conn = RawConnection::open(up.port).unwrap();
        for _ in 0..5 {
            let raw = conn.request("GET", "/ka", &[], None).unwrap();
            assert_eq!(raw.response.status, 200);
            assert!(raw.keep_alive);
        }
        assert_eq!(up.hits("/ka"), 5);

        // nginx talks HTTP/1.0 to upstreams by default: answer, then close.
        let mut s = TcpStream::connect(("127.0.0.1", up.port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /old HTTP/1.0\r\n\r\n").unwrap();
        let mut raw = String::new();
        s.read_to_string(&mut raw).unwrap();
        assert!(
            raw.starts_with("HTTP/1.1 200 OK\r\n") && raw.ends_with("\r\n\r\nok"),
            "{raw:?}"
        );

        let statuses = hammer(up.port, "/h", 60, 4);
        assert_eq!(statuses.len(), 60);
        assert!(statuses.iter().all(|&s| s == 200), "{statuses:?}");
        assert_eq!(up.hits("/h"), 60);
        assert_eq!(up.total_hits(), up.requests().len());
    }

    #[test]
    fn hanging_listener_holds_connections_until_dropped() {
        let (port, listener) = hanging_listener();
        let err = try_http_request_timeout(port, "GET", "/", &[], None, Duration::from_millis(300))
            .expect_err("a hanging listener must not answer");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        assert_eq!(listener.accepted(), 1);
        assert!(listener.accepted_at()[0] <= Instant::now());
        drop(listener);
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        assert!(
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_err(),
            "still listening"
        );
    }
}
