//! Why a probe failed: the one list of failure reasons, shared by the probes, the zone's
//! counters, the metrics and the status page.

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
    /// The body lacks the `body=` text (or came in a `Content-Encoding` it cannot be read in).
    Body = 6,
    /// The `header=` header is missing or lacks its text.
    Header = 7,
    /// The answer took longer than `max_time=`.
    Slow = 8,
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
            Reason::Body => "body check failed".into(),
            Reason::Header => "header check failed".into(),
            Reason::Slow => "answer slower than max_time".into(),
        }
    }

    /// How many reasons there are.
    pub const COUNT: usize = Reason::ALL.len();

    /// Every reason, in the order of their values.
    pub const ALL: [Reason; 9] = [
        Reason::Refused,
        Reason::Timeout,
        Reason::Status,
        Reason::Reset,
        Reason::Tls,
        Reason::Dns,
        Reason::Body,
        Reason::Header,
        Reason::Slow,
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
            Reason::Body => "body",
            Reason::Header => "header",
            Reason::Slow => "slow",
        }
    }

    /// The reason with value `i`.
    pub fn from_index(i: u32) -> Option<Reason> {
        Reason::ALL.get(i as usize).copied()
    }
}
