//! The module's private state directory (`status_alert_state_path`): where it is by default,
//! and the check `nginx -t` makes once nginx has created it. The evaluation lease and the
//! hand-over state live in it (`driver/lease.rs`). Pure Rust, unit-tested.

use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use thiserror::Error;

/// Why the state directory or a file in it cannot be used.
#[derive(Debug, Error)]
pub enum StateDirError {
    /// The directory cannot be opened as a directory of ours.
    #[error("cannot open the state directory \"{path}\": {source}")]
    Open {
        /// The directory.
        path: String,
        /// What the system said.
        source: io::Error,
    },
    /// The directory is not safe from other users.
    #[error("the state directory \"{path}\" {problem}")]
    Unsafe {
        /// The directory.
        path: String,
        /// What is wrong, e.g. "is writable by group or others".
        problem: String,
    },
    /// A file in the directory cannot be used.
    #[error("cannot use \"{path}\": {source}")]
    File {
        /// The file.
        path: String,
        /// What the system said.
        source: io::Error,
    },
}

/// Checks `path` as a state directory before nginx uses it: a real directory (not a link),
/// not writable by group or others, owned by one of `owners` (the worker user, the user nginx
/// runs as), in a parent that other users cannot rename it out of. A missing directory is
/// fine: nginx creates it.
pub fn check_dir(path: &str, owners: &[u32]) -> Result<(), StateDirError> {
    let unsafe_dir = |problem: String| StateDirError::Unsafe {
        path: path.to_string(),
        problem,
    };
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(StateDirError::Open {
                path: path.to_string(),
                source,
            })
        }
    };
    if meta.file_type().is_symlink() {
        return Err(unsafe_dir("is a symbolic link".into()));
    }
    if !meta.is_dir() {
        return Err(unsafe_dir("is not a directory".into()));
    }
    if meta.mode() & 0o022 != 0 {
        return Err(unsafe_dir(format!(
            "is writable by group or others (mode {:04o}); make it 0700",
            meta.mode() & 0o7777
        )));
    }
    if !owners.contains(&meta.uid()) {
        return Err(unsafe_dir(format!(
            "belongs to uid {}, not to the user nginx runs its workers as",
            meta.uid()
        )));
    }
    if let Some(parent) = Path::new(path).parent() {
        if let Ok(p) = std::fs::metadata(parent) {
            if p.mode() & 0o002 != 0 && p.mode() & 0o1000 == 0 {
                return Err(unsafe_dir(format!(
                    "is in \"{}\", which every user can write to: another user could replace it",
                    parent.display()
                )));
            }
        }
    }
    Ok(())
}

/// The directory part of `path` as bytes, for the default state path beside a temp path.
pub fn sibling(path: &str, name: &str) -> String {
    let p = Path::new(path.trim_end_matches('/'));
    let parent = p.parent().unwrap_or(Path::new("/"));
    let mut out = parent.as_os_str().as_bytes().to_vec();
    if !out.ends_with(b"/") {
        out.push(b'/');
    }
    out.extend_from_slice(name.as_bytes());
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_lives_beside_the_temp_path() {
        assert_eq!(
            sibling("/var/lib/nginx/body", "status_alert"),
            "/var/lib/nginx/status_alert"
        );
        assert_eq!(
            sibling("/usr/local/nginx/client_body_temp/", "status_alert"),
            "/usr/local/nginx/status_alert"
        );
        assert_eq!(sibling("/body", "status_alert"), "/status_alert");
    }
}
