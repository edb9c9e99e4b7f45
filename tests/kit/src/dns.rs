//! A tiny DNS server on loopback (UDP, RFC 1035 4.1) for nginx's `resolver`: it knows one name,
//! answers its A query with the addresses the test sets (TTL 1 s; changeable while it runs),
//! and can instead answer NXDOMAIN to every name or stay silent ([`DnsMode`]).

use std::net::UdpSocket;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// What a [`DnsServer`] does with a query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DnsMode {
    /// The known name's A query gets the addresses set; any other type of it no records, any
    /// other name NXDOMAIN.
    Answer,
    /// Every name is NXDOMAIN.
    NxDomain,
    /// No answer at all.
    Silent,
}

/// What the server answers: the mode and the known name's addresses.
struct Answer {
    mode: DnsMode,
    addrs: Vec<[u8; 4]>,
}

/// A UDP DNS server on 127.0.0.1:`port`, in a thread, until dropped; starts in
/// [`DnsMode::Answer`].
pub struct DnsServer {
    pub port: u16,
    answer: Arc<Mutex<Answer>>,
    queries: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl DnsServer {
    /// Answers `name` (case-insensitive, without the trailing dot) A with `addrs`.
    pub fn start(name: &str, addrs: &[[u8; 4]]) -> DnsServer {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("bind DNS socket");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("read timeout");
        let port = sock.local_addr().expect("local addr").port();
        let answer = Arc::new(Mutex::new(Answer {
            mode: DnsMode::Answer,
            addrs: addrs.to_vec(),
        }));
        let queries = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (a, q, s) = (answer.clone(), queries.clone(), stop.clone());
        let name = name.to_lowercase();
        let thread = thread::spawn(move || {
            let mut buf = [0u8; 512];
            while !s.load(SeqCst) {
                let Ok((n, from)) = sock.recv_from(&mut buf) else {
                    continue;
                };
                q.fetch_add(1, SeqCst);
                let reply = {
                    let a = a.lock().unwrap();
                    dns_reply(&buf[..n], &name, &a.addrs, a.mode)
                };
                if let Some(reply) = reply {
                    let _ = sock.send_to(&reply, from);
                }
            }
        });
        DnsServer {
            port,
            answer,
            queries,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers the name with `addrs` from now on (none: no records).
    pub fn set_addrs(&self, addrs: &[[u8; 4]]) {
        self.answer.lock().unwrap().addrs = addrs.to_vec();
    }

    /// Does what `mode` says from now on.
    pub fn set_mode(&self, mode: DnsMode) {
        self.answer.lock().unwrap().mode = mode;
    }

    /// The queries received so far (answered or not).
    pub fn queries(&self) -> usize {
        self.queries.load(SeqCst)
    }
}

impl Drop for DnsServer {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The reply to one query for `name` with `addrs` in `mode`, or `None` to stay silent or for a
/// malformed query.
fn dns_reply(query: &[u8], name: &str, addrs: &[[u8; 4]], mode: DnsMode) -> Option<Vec<u8>> {
    if mode == DnsMode::Silent || query.len() < 12 {
        return None;
    }
    // The question: labels up to the root label, then QTYPE and QCLASS.
    let mut i = 12;
    let mut labels = Vec::new();
    loop {
        let len = *query.get(i)? as usize;
        i += 1;
        if len == 0 {
            break;
        }
        labels.push(String::from_utf8_lossy(query.get(i..i + len)?).to_lowercase());
        i += len;
    }
    let qtype = u16::from_be_bytes([*query.get(i)?, *query.get(i + 1)?]);
    let question = query.get(12..i + 4)?;
    let known = mode == DnsMode::Answer && labels.join(".") == name;
    let answers: &[[u8; 4]] = if known && qtype == 1 { addrs } else { &[] };
    // QR, opcode 0, RD, RA; RCODE 3 (NXDOMAIN) unless the name is known.
    let rcode = if known { 0 } else { 3 };
    let mut out = Vec::with_capacity(64 + 16 * answers.len());
    out.extend_from_slice(&query[..2]); // ID
    out.extend_from_slice(&(0x8180u16 | rcode).to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes()); // QDCOUNT
    out.extend_from_slice(&(answers.len() as u16).to_be_bytes()); // ANCOUNT
    out.extend_from_slice(&[0, 0, 0, 0]); // NSCOUNT, ARCOUNT
    out.extend_from_slice(question);
    for a in answers {
        out.extend_from_slice(&[0xc0, 12]); // the question's name
        out.extend_from_slice(&[0, 1, 0, 1]); // A, IN
        out.extend_from_slice(&1u32.to_be_bytes()); // TTL 1s
        out.extend_from_slice(&[0, 4]);
        out.extend_from_slice(a);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A query for `name` of `qtype` as nginx sends it (ID 0x1234, RD).
    fn query(name: &str, qtype: u8) -> Vec<u8> {
        let mut q = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            q.push(label.len() as u8);
            q.extend_from_slice(label.as_bytes());
        }
        q.extend_from_slice(&[0, 0, qtype, 0, 1]);
        q
    }

    #[test]
    fn dns_reply_is_well_formed_in_every_mode() {
        let q = query("app.test", 1);
        let one = dns_reply(&q, "app.test", &[[127, 0, 0, 1]], DnsMode::Answer).unwrap();
        assert_eq!(&one[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(&one[6..8], &[0, 1], "one answer");
        assert_eq!(&one[one.len() - 4..], &[127, 0, 0, 1]);
        let two = [[127, 0, 0, 1], [127, 0, 0, 2]];
        let r = dns_reply(&q, "app.test", &two, DnsMode::Answer).unwrap();
        assert_eq!(&r[..4], &[0x12, 0x34, 0x81, 0x80]);
        assert_eq!(&r[6..8], &[0, 2], "two answers");
        assert_eq!(&r[r.len() - 4..], &[127, 0, 0, 2]);
        let none = dns_reply(&q, "app.test", &[], DnsMode::Answer).unwrap();
        assert_eq!((&none[2..4], &none[6..8]), (&[0x81, 0x80][..], &[0, 0][..]));
        // AAAA of the known name: no records, no error.
        let aaaa = dns_reply(&query("app.test", 28), "app.test", &two, DnsMode::Answer).unwrap();
        assert_eq!((&aaaa[2..4], &aaaa[6..8]), (&[0x81, 0x80][..], &[0, 0][..]));
        // Another name, or NXDOMAIN mode: RCODE 3, the question only.
        let other = dns_reply(&query("x.test", 1), "app.test", &two, DnsMode::Answer).unwrap();
        assert_eq!(&other[2..4], &[0x81, 0x83]);
        let nx = dns_reply(&q, "app.test", &two, DnsMode::NxDomain).unwrap();
        assert_eq!(&nx[2..4], &[0x81, 0x83]);
        assert_eq!(nx.len(), q.len(), "question only");
        assert!(dns_reply(&q, "app.test", &two, DnsMode::Silent).is_none());
        assert!(dns_reply(&q[..14], "app.test", &two, DnsMode::Answer).is_none());
    }

    #[test]
    fn dns_server_answers_over_udp_as_set() {
        let dns = DnsServer::start("App.Test", &[[127, 0, 0, 1]]);
        let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let ask = || {
            sock.send_to(&query("app.test", 1), ("127.0.0.1", dns.port))
                .unwrap();
            let mut buf = [0u8; 512];
            sock.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
        };
        let r = ask().expect("an answer");
        assert_eq!(
            (&r[6..8], &r[r.len() - 4..]),
            (&[0, 1][..], &[127, 0, 0, 1][..])
        );
        dns.set_addrs(&[[127, 0, 0, 2], [127, 0, 0, 3]]);
        let r = ask().expect("an answer");
        assert_eq!(
            (&r[6..8], &r[r.len() - 4..]),
            (&[0, 2][..], &[127, 0, 0, 3][..])
        );
        dns.set_mode(DnsMode::NxDomain);
        assert_eq!(&ask().expect("an answer")[2..4], &[0x81, 0x83]);
        dns.set_mode(DnsMode::Silent);
        assert_eq!(ask(), None);
        assert_eq!(dns.queries(), 4);
    }
}
