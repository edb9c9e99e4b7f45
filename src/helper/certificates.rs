//! Re-reading the certificate files nginx serves, in the helper process (a thread of its own),
//! so that a renewal nginx has not been reloaded to serve is seen within seconds and no file
//! read ever runs on nginx's event loop.
//!
//! Every [`CHECK`] the thread looks at each file's metadata (`stat`, following symbolic links
//! as nginx does: certbot's `live/` files are links into `archive/`); it reads and parses the
//! file when its modification time, size or inode changed, and at least every [`REREAD`]
//! regardless. What it finds goes into the file's [`CertificateWatch`] in the zone, where the
//! evaluator and `status_metrics` read it. A file that cannot be read or holds no certificate
//! is recorded as such, not fatal.

use core::sync::atomic::Ordering::Relaxed;
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::conf::certificate_file::{self, CertificateFileError};
use crate::zone::CertificateWatch;

/// How often file metadata is looked at.
pub const CHECK: Duration = Duration::from_secs(1);
/// How often a file is read even when its metadata says nothing changed.
pub const REREAD: Duration = Duration::from_secs(300);

/// [`CertificateWatch::on_disk_error`] values.
pub const READ_OK: u32 = 0;
/// The file cannot be opened or read.
pub const UNREADABLE: u32 = 1;
/// The file holds no certificate.
pub const UNPARSABLE: u32 = 2;

/// One file to watch and where its findings go.
pub struct WatchedFile {
    /// The file.
    pub path: PathBuf,
    /// Its cell in the zone (mapped for the helper's life).
    pub watch: &'static CertificateWatch,
}

/// What identifies a version of a file: modification time, size, inode.
type Version = (i64, u64, u64);

/// Starts the thread (nothing to do without files).
pub fn start(files: Vec<WatchedFile>) {
    if files.is_empty() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("certificates".into())
        .spawn(move || watch_loop(&files));
    // Without the thread the files are simply not re-read; the served expiry still alerts.
    drop(spawned);
}

fn watch_loop(files: &[WatchedFile]) -> ! {
    let mut seen: Vec<Option<(Version, Instant)>> = vec![None; files.len()];
    loop {
        for (f, last) in files.iter().zip(seen.iter_mut()) {
            let version = std::fs::metadata(&f.path)
                .ok()
                .map(|m| (m.mtime(), m.len(), m.ino()));
            let due = match (*last, version) {
                (Some((v, at)), Some(now)) => v != now || at.elapsed() >= REREAD,
                (Some((_, at)), None) => {
                    at.elapsed() >= REREAD || f.watch.on_disk_error.load(Relaxed) == READ_OK
                }
                (None, _) => true,
            };
            if due {
                record(f, version);
                *last = Some((version.unwrap_or_default(), Instant::now()));
            }
        }
        std::thread::sleep(CHECK);
    }
}

/// Reads `f` and stores what it holds.
fn record(f: &WatchedFile, version: Option<Version>) {
    let w = f.watch;
    match certificate_file::read(&f.path) {
        Ok(file) => {
            w.on_disk_not_after_unix.store(file.not_after_unix, Relaxed);
            let mtime = version.map_or(0, |v| u64::try_from(v.0).unwrap_or(0));
            w.on_disk_since_unix.store(mtime, Relaxed);
            w.on_disk_error.store(READ_OK, Relaxed);
        }
        Err(e) => {
            w.on_disk_not_after_unix.store(0, Relaxed);
            w.on_disk_error.store(
                match e {
                    CertificateFileError::Unreadable { .. } => UNREADABLE,
                    CertificateFileError::Unparsable { .. } => UNPARSABLE,
                },
                Relaxed,
            );
        }
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    w.on_disk_read_unix.store(now, Relaxed);
}
