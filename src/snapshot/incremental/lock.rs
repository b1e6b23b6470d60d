//! The store's lock: writers (a capture, a restore) hold it shared, the garbage collector
//! exclusive, so an object a writer is about to reference is never collected under it.
//! An `flock` on `<dir>/.lock`: it holds across processes, the helper container's
//! included (it sees the same file through its bind mount), and dies with its holder.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// A held lock; released when dropped.
#[derive(Debug)]
pub struct StoreLock {
    _file: File,
}

impl StoreLock {
    fn open(dir: &Path) -> io::Result<File> {
        std::fs::create_dir_all(dir)?;
        std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(".lock"))
    }

    /// Waits for a shared hold (a writer).
    pub fn shared(dir: &Path) -> io::Result<Self> {
        let file = Self::open(dir)?;
        flock(&file, libc::LOCK_SH)?;
        Ok(Self { _file: file })
    }

    /// An exclusive hold if nobody writes now; `None` when a writer holds it.
    pub fn try_exclusive(dir: &Path) -> io::Result<Option<Self>> {
        let file = Self::open(dir)?;
        match flock(&file, libc::LOCK_EX | libc::LOCK_NB) {
            Ok(()) => Ok(Some(Self { _file: file })),
            Err(e) if e.raw_os_error() == Some(libc::EWOULDBLOCK) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

fn flock(file: &File, op: libc::c_int) -> io::Result<()> {
    loop {
        // SAFETY: `file` is an open descriptor for the duration of the call.
        if unsafe { libc::flock(file.as_raw_fd(), op) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
