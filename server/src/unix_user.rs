//! Unix users: who this process is, and the unprivileged users its children run as when it
//! runs as root (the built-in processor's tools, the embedded Postgres).

/// A user a child process runs as (ffmpeg, the embedded Postgres) when Reeltime runs as root.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RunAs {
    pub uid: u32,
    pub gid: u32,
}

impl RunAs {
    /// The user called `name`, if there is one.
    pub fn named(name: &str) -> Option<RunAs> {
        let name = std::ffi::CString::new(name).ok()?;
        let mut entry = std::mem::MaybeUninit::<libc::passwd>::uninit();
        let mut found = std::ptr::null_mut();
        let mut buffer = vec![0u8; 4096];
        // SAFETY: getpwnam_r writes only into `entry` and `buffer`, whose sizes we pass; the
        // result is read only when it reports success and a found entry.
        let code = unsafe {
            libc::getpwnam_r(
                name.as_ptr(),
                entry.as_mut_ptr(),
                buffer.as_mut_ptr().cast(),
                buffer.len(),
                &mut found,
            )
        };
        if code != 0 || found.is_null() {
            return None;
        }
        // SAFETY: `found` is non-null, so `entry` was filled in.
        let entry = unsafe { entry.assume_init() };
        Some(RunAs {
            uid: entry.pw_uid,
            gid: entry.pw_gid,
        })
    }
}

/// Whether this process runs as root.
pub fn is_root() -> bool {
    // SAFETY: geteuid cannot fail.
    unsafe { libc::geteuid() == 0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_are_found_by_name() {
        assert_eq!(RunAs::named("root"), Some(RunAs { uid: 0, gid: 0 }));
        assert_eq!(RunAs::named("no-such-user-here"), None);
        assert_eq!(RunAs::named("nul\0inside"), None);
    }
}
