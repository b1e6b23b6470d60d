//! Copy-on-write clones (`FICLONE`, XFS and btrfs among others): a file's contents shared
//! with its copy until either changes, so copying costs no data I/O. Used where the
//! snapshot store and the volume share such a filesystem; anywhere else the clone is
//! refused and the caller copies, which gives the same result.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// `_IOW(0x94, 9, int)`: the Linux ioctl that clones a whole file.
const FICLONE: libc::c_ulong = 0x4004_9409;

/// Makes `dst` (empty, open for writing) share `src`'s contents.
pub fn clone_file(src: &File, dst: &File) -> io::Result<()> {
    // SAFETY: both descriptors are open for the duration of the call; FICLONE takes the
    // source descriptor as its argument.
    let rc = unsafe { libc::ioctl(dst.as_raw_fd(), FICLONE as _, src.as_raw_fd()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether files in `dir` can be cloned: tried once on two scratch files there.
pub fn supported(dir: &Path) -> bool {
    let try_it = || -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let a = dir.join(".reflink-probe-a");
        let b = dir.join(".reflink-probe-b");
        let result = (|| {
            std::fs::write(&a, b"sluice")?;
            let src = File::open(&a)?;
            let dst = File::create(&b)?;
            clone_file(&src, &dst)
        })();
        let _ = std::fs::remove_file(&a);
        let _ = std::fs::remove_file(&b);
        result
    };
    try_it().is_ok()
}
