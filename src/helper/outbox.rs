//! Payloads on their way from worker 0 to the helper process, kept until the helper has taken
//! them (pure, unit-tested).
//!
//! Each payload is one line on the pipe, `DESTINATION \t ID \t BODY \n`, with an id that grows
//! by one per payload. The helper acknowledges the highest id it has handed to its delivery
//! threads; until then the payload stays here. So a helper that stops reading (stopped, hung)
//! or dies takes nothing with it that it had not taken: when worker 0 replaces it, the outbox
//! is rewound and every payload not acknowledged is written, whole, to the next helper.

use std::collections::VecDeque;
use std::io::{self, Write};

/// One payload and its line on the pipe.
#[derive(Debug)]
struct Payload {
    id: u64,
    destination: usize,
    line: Vec<u8>,
}

/// Payloads not yet acknowledged by the helper, oldest first.
#[derive(Debug, Default)]
pub struct Outbox {
    queue: VecDeque<Payload>,
    /// Bytes at the front of the queue already written into the current helper's pipe.
    written: usize,
    /// Bytes in the queue.
    bytes: usize,
    /// Id of the last payload queued.
    last_id: u64,
}

/// The destination and id a payload line starts with (`3\t17\t{...}`).
pub fn parse_line(line: &[u8]) -> Option<(usize, u64, &[u8])> {
    let mut parts = line.splitn(3, |b| *b == b'\t');
    let number = |p: Option<&[u8]>| std::str::from_utf8(p?).ok()?.parse::<u64>().ok();
    let destination = number(parts.next())? as usize;
    let id = number(parts.next())?;
    let body = parts.next()?;
    Some((destination, id, body.strip_suffix(b"\n").unwrap_or(body)))
}

impl Outbox {
    /// Queues `body` for `destination`, dropping the oldest payloads not yet written while
    /// over `limit` bytes; returns the destinations of those dropped (the new one, if it cannot
    /// fit even then). A payload already in the pipe is never dropped: the helper may read it.
    pub fn push(&mut self, destination: usize, body: &str, limit: usize) -> Vec<usize> {
        self.last_id += 1;
        let line = format!("{destination}\t{}\t{body}\n", self.last_id).into_bytes();
        let mut dropped = Vec::new();
        while self.bytes + line.len() > limit {
            match self.first_unwritten() {
                Some(i) if line.len() <= limit => {
                    let p = self.queue.remove(i).expect("index from first_unwritten");
                    self.bytes -= p.line.len();
                    dropped.push(p.destination);
                }
                _ => {
                    dropped.push(destination);
                    return dropped;
                }
            }
        }
        self.bytes += line.len();
        self.queue.push_back(Payload {
            id: self.last_id,
            destination,
            line,
        });
        dropped
    }

    /// Index of the oldest payload no byte of which was written.
    fn first_unwritten(&self) -> Option<usize> {
        let mut start = 0;
        for (i, p) in self.queue.iter().enumerate() {
            if start >= self.written {
                return Some(i);
            }
            start += p.line.len();
        }
        None
    }

    /// The next bytes to write: the rest of the first payload not completely written.
    fn next_chunk(&self) -> Option<&[u8]> {
        let mut skip = self.written;
        for p in &self.queue {
            if skip < p.line.len() {
                return Some(&p.line[skip..]);
            }
            skip -= p.line.len();
        }
        None
    }

    /// Writes as much as `w` takes without blocking (a non-blocking pipe).
    pub fn write_to(&mut self, w: &mut impl Write) {
        while let Some(chunk) = self.next_chunk() {
            let len = chunk.len();
            match w.write(chunk) {
                Ok(0) => break,
                Ok(n) => {
                    self.written += n;
                    if n < len {
                        break;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    }

    /// The helper took every payload up to `id`: they leave the outbox. Returns their
    /// destinations.
    pub fn acknowledge(&mut self, id: u64) -> Vec<usize> {
        let mut taken = Vec::new();
        while self.queue.front().is_some_and(|p| p.id <= id) {
            let p = self.queue.pop_front().expect("checked front");
            self.written = self.written.saturating_sub(p.line.len());
            self.bytes -= p.line.len();
            taken.push(p.destination);
        }
        taken
    }

    /// The pipe is gone: every payload not acknowledged is written whole to the next one.
    pub fn rewind(&mut self) {
        self.written = 0;
    }

    /// The pipe closes for good (nginx is exiting): the payloads written whole stay with the
    /// helper, which reads them before it sees the end; the others leave the outbox, and
    /// their destinations are returned.
    pub fn take_unwritten(&mut self) -> Vec<usize> {
        let mut start = 0;
        let mut keep = 0;
        for p in &self.queue {
            if start + p.line.len() > self.written {
                break;
            }
            start += p.line.len();
            keep += 1;
        }
        let rest: Vec<usize> = self.queue.drain(keep..).map(|p| p.destination).collect();
        self.bytes = self.queue.iter().map(|p| p.line.len()).sum();
        self.written = self.bytes;
        rest
    }

    /// The pipe closes but its helper lives on (retired after `nginx -s reopen`): the payloads
    /// written whole stay with it (it reads, delivers and counts them before it exits); the
    /// others will go whole to the next helper.
    pub fn hand_off_written(&mut self) {
        while self
            .queue
            .front()
            .is_some_and(|p| p.line.len() <= self.written)
        {
            let p = self.queue.pop_front().expect("checked front");
            self.written -= p.line.len();
            self.bytes -= p.line.len();
        }
        self.written = 0;
    }

    /// Payloads waiting (not acknowledged).
    pub fn len(&self) -> usize {
        self.queue.len()
    }

    /// True when nothing waits.
    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A pipe that takes `room` more bytes.
    struct Pipe {
        data: Vec<u8>,
        room: usize,
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::ErrorKind::WouldBlock.into());
            }
            let n = buf.len().min(self.room);
            self.data.extend_from_slice(&buf[..n]);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn pipe(room: usize) -> Pipe {
        Pipe {
            data: Vec::new(),
            room,
        }
    }

    #[test]
    fn lines_carry_destination_and_id() {
        let mut o = Outbox::default();
        o.push(2, "{\"a\":1}", 1 << 20);
        o.push(0, "", 1 << 20);
        let mut p = pipe(usize::MAX);
        o.write_to(&mut p);
        let lines: Vec<_> = p.data.split_inclusive(|b| *b == b'\n').collect();
        assert_eq!(parse_line(lines[0]), Some((2, 1, &b"{\"a\":1}"[..])));
        assert_eq!(parse_line(lines[1]), Some((0, 2, &b""[..])));
        assert_eq!(parse_line(b"x\t1\t{}"), None);
        assert_eq!(parse_line(b"1\t{}"), None);
    }

    #[test]
    fn payloads_stay_until_acknowledged_and_go_whole_to_the_next_pipe() {
        let mut o = Outbox::default();
        o.push(1, "aaaa", 1 << 20); // "1\t1\taaaa\n": 9 bytes
        o.push(2, "bbbb", 1 << 20);
        o.push(3, "cccc", 1 << 20);
        let mut p = pipe(14);
        o.write_to(&mut p);
        assert_eq!(p.data, b"1\t1\taaaa\n2\t2\tb");
        assert_eq!(o.acknowledge(1), vec![1]);
        assert_eq!(o.len(), 2);
        // The helper stalls with half of "bbbb" in its pipe; a new helper gets it whole.
        o.rewind();
        let mut next = pipe(usize::MAX);
        o.write_to(&mut next);
        assert_eq!(next.data, b"2\t2\tbbbb\n3\t3\tcccc\n");
        assert_eq!(o.acknowledge(3), vec![2, 3]);
        assert!(o.is_empty());
        // Nothing is written twice to one pipe.
        o.write_to(&mut next);
        assert_eq!(next.data.len(), 18);
    }

    #[test]
    fn the_oldest_unwritten_payloads_make_room_never_one_in_the_pipe() {
        let mut o = Outbox::default();
        // Each line is 9 bytes; the limit holds three.
        assert!(o.push(1, "aaaa", 27).is_empty());
        assert!(o.push(2, "bbbb", 27).is_empty());
        let mut p = pipe(3);
        o.write_to(&mut p); // part of the first is in the pipe
        assert!(o.push(3, "cccc", 27).is_empty());
        assert_eq!(
            o.push(4, "dddd", 27),
            vec![2],
            "the oldest unwritten one goes"
        );
        assert_eq!(o.push(5, "eeee", 27), vec![3]);
        assert_eq!(o.len(), 3);
        // All of it in the pipe: a new payload that does not fit is dropped itself.
        let mut p = pipe(usize::MAX);
        o.write_to(&mut p);
        assert_eq!(o.push(6, "ffff", 27), vec![6]);
        assert_eq!(o.push(7, &"x".repeat(40), 1 << 20).len(), 0);
        assert_eq!(o.push(8, &"x".repeat(40), 27), vec![8], "too big alone");
    }

    #[test]
    fn a_retired_pipe_keeps_its_whole_payloads_and_the_rest_goes_on() {
        let mut o = Outbox::default();
        o.push(1, "aaaa", 1 << 20);
        o.push(2, "bbbb", 1 << 20);
        o.push(3, "cccc", 1 << 20);
        let mut p = pipe(12);
        o.write_to(&mut p);
        o.hand_off_written();
        assert_eq!(o.len(), 2);
        let mut next = pipe(usize::MAX);
        o.write_to(&mut next);
        assert_eq!(next.data, b"2\t2\tbbbb\n3\t3\tcccc\n");
    }

    #[test]
    fn closing_keeps_what_the_pipe_holds_whole() {
        let mut o = Outbox::default();
        o.push(1, "aaaa", 1 << 20);
        o.push(2, "bbbb", 1 << 20);
        o.push(3, "cccc", 1 << 20);
        let mut p = pipe(12);
        o.write_to(&mut p);
        assert_eq!(o.take_unwritten(), vec![2, 3]);
        assert_eq!(o.len(), 1);
        assert_eq!(o.acknowledge(1), vec![1]);
    }
}
