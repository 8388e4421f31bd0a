//! Free space on a file system, and the floor below which the server stops taking new work.
//!
//! The built-in processor's outputs and the embedded Postgres share the data directory. A disk
//! that fills up stops Postgres (it cannot write its WAL) and with it the whole server, so the
//! processor refuses new jobs while free space is under `REELTIME_MIN_FREE_DISK_MB`, leaving
//! the rest for the database, and `/readyz` names the shortage. Space is what an unprivileged
//! process may use (`f_bavail`), not the blocks kept for root.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

const MB: u64 = 1024 * 1024;

/// Bytes an unprivileged process may still write on the file system holding `path`.
pub fn free_bytes(path: &Path) -> io::Result<u64> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL byte in the path"))?;
    // SAFETY: statvfs only writes into the struct we hand it; the path is NUL-terminated.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c_path.as_ptr(), &mut stats) } != 0 {
        return Err(io::Error::last_os_error());
    }
    #[allow(clippy::unnecessary_cast)] // the field types differ between platforms
    Ok((stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64))
}

/// A directory and the free space it must keep.
#[derive(Clone, Debug)]
pub struct DiskFloor {
    pub path: PathBuf,
    /// In bytes; 0 means no floor.
    pub min_free: u64,
}

/// Free space under the floor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shortage {
    pub free: u64,
    pub floor: u64,
}

impl fmt::Display for Shortage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the server's disk is nearly full ({} MB free, the floor is {} MB)",
            self.free / MB,
            self.floor / MB
        )
    }
}

impl DiskFloor {
    /// The shortage, if free space is under the floor. A file system that cannot be measured
    /// is logged and not held against the work (refusing every job over a failed `statvfs`
    /// would be worse than the disk filling up).
    pub fn shortage(&self) -> Option<Shortage> {
        if self.min_free == 0 {
            return None;
        }
        match free_bytes(&self.path) {
            Ok(free) if free < self.min_free => Some(Shortage {
                free,
                floor: self.min_free,
            }),
            Ok(_) => None,
            Err(err) => {
                tracing::warn!(path = %self.path.display(), error = %err, "could not measure free disk space");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn free_space_is_measured_and_compared_with_the_floor() {
        let dir = std::env::temp_dir();
        let free = free_bytes(&dir).unwrap();
        assert!(free > 0);
        let floor = |min_free| DiskFloor {
            path: dir.clone(),
            min_free,
        };
        assert_eq!(floor(0).shortage(), None, "0 is no floor");
        assert_eq!(floor(1).shortage(), None);
        let shortage = floor(u64::MAX).shortage().expect("no disk is that big");
        assert_eq!(shortage.floor, u64::MAX);
        assert!(shortage.free > 0);
        let text = Shortage {
            free: 5 * MB,
            floor: 1024 * MB,
        }
        .to_string();
        assert_eq!(
            text,
            "the server's disk is nearly full (5 MB free, the floor is 1024 MB)"
        );
        assert!(free_bytes(Path::new("/no/such/directory")).is_err());
        assert_eq!(
            DiskFloor {
                path: "/no/such/directory".into(),
                min_free: 1
            }
            .shortage(),
            None,
            "unmeasurable is not a shortage"
        );
    }
}
