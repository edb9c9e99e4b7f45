//! A client that sends a small request every millisecond or so on one kept-alive connection
//! and records how long each took: what another client of a worker sees while that worker
//! does something long (a scrape, an evaluation round). A request that waits shows as a long
//! round trip; a stalled event loop as a run of them.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::raw::RawConnection;

/// Round trips of a [`Pinger`], in the order sent.
#[derive(Clone, Debug, Default)]
pub struct Pings {
    /// When each request was sent, and how long until its whole response was read.
    pub round_trips: Vec<(Instant, Duration)>,
    /// Responses with another status than the one expected, or transport errors.
    pub failures: Vec<String>,
}

impl Pings {
    /// The longest round trip (zero without any).
    pub fn max(&self) -> Duration {
        self.round_trips
            .iter()
            .map(|(_, d)| *d)
            .max()
            .unwrap_or_default()
    }

    /// The `q` quantile (0..=1) of the round trips, nearest rank (zero without any).
    pub fn quantile(&self, q: f64) -> Duration {
        let mut all: Vec<Duration> = self.round_trips.iter().map(|(_, d)| *d).collect();
        if all.is_empty() {
            return Duration::ZERO;
        }
        all.sort();
        let rank = ((q.clamp(0.0, 1.0) * all.len() as f64).ceil() as usize).clamp(1, all.len());
        all[rank - 1]
    }

    /// Round trips longer than `limit`.
    pub fn longer_than(&self, limit: Duration) -> usize {
        self.round_trips.iter().filter(|(_, d)| *d > limit).count()
    }

    /// One line for the test output: count, p50, p99, max.
    pub fn summary(&self) -> String {
        format!(
            "{} requests, p50 {:?}, p99 {:?}, max {:?}, failures {}",
            self.round_trips.len(),
            self.quantile(0.5),
            self.quantile(0.99),
            self.max(),
            self.failures.len()
        )
    }
}

/// Sends `GET path` to 127.0.0.1:`port` every `every` (after the previous answer) until
/// stopped; each response must have `status`. A connection the server closes (after
/// `keepalive_requests`) is replaced by a new one.
pub struct Pinger {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Pings>,
}

impl Pinger {
    /// Starts pinging on one connection.
    pub fn start(port: u16, path: &str, status: u16, every: Duration) -> io::Result<Pinger> {
        let mut conn = RawConnection::open(port)?;
        let stop = Arc::new(AtomicBool::new(false));
        let path = path.to_string();
        let stopped = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut pings = Pings::default();
            while !stopped.load(Ordering::Relaxed) {
                let sent = Instant::now();
                match conn.request("GET", &path, &[], None) {
                    Ok(r) if r.response.status == status => {
                        pings.round_trips.push((sent, sent.elapsed()));
                        // nginx closes a connection after keepalive_requests (1000).
                        if !r.keep_alive {
                            match RawConnection::open(port) {
                                Ok(c) => conn = c,
                                Err(e) => {
                                    pings.failures.push(e.to_string());
                                    break;
                                }
                            }
                        }
                    }
                    Ok(r) => {
                        pings.failures.push(format!("status {}", r.response.status));
                        break;
                    }
                    Err(e) => {
                        pings.failures.push(e.to_string());
                        break;
                    }
                }
                thread::sleep(every);
            }
            pings
        });
        Ok(Pinger { stop, thread })
    }

    /// Stops and returns what was seen.
    pub fn stop(self) -> Pings {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("the pinger thread panicked")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pings(ms: &[u64]) -> Pings {
        let now = Instant::now();
        Pings {
            round_trips: ms
                .iter()
                .map(|m| (now, Duration::from_millis(*m)))
                .collect(),
            failures: Vec::new(),
        }
    }

    #[test]
    fn quantiles_by_nearest_rank() {
        let p = pings(&[5, 1, 3, 2, 4, 100, 6, 7, 8, 9]);
        assert_eq!(p.quantile(0.5), Duration::from_millis(5));
        assert_eq!(p.quantile(0.99), Duration::from_millis(100));
        assert_eq!(p.quantile(0.0), Duration::from_millis(1));
        assert_eq!(p.max(), Duration::from_millis(100));
        assert_eq!(p.longer_than(Duration::from_millis(8)), 2);
        assert_eq!(Pings::default().max(), Duration::ZERO);
    }
}
