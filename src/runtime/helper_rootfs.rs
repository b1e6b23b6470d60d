//! The helper image's root filesystem: the binary, its ELF interpreter (read from the
//! `PT_INTERP` program header) and the shared libraries the interpreter resolves for it
//! (`ld.so --list`, what `ldd` runs), each stored as a regular file at the path the binary
//! finds it, in an in-memory tar for `docker import`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::HELPER_BINARY;

/// The helper image's root filesystem as a tar: `/sluice`, the interpreter and the
/// libraries at the paths the binary finds them, `/tmp`.
pub(super) fn rootfs(binary: &Path) -> Result<Vec<u8>, String> {
    let mut file =
        std::fs::File::open(binary).map_err(|e| format!("cannot read the binary: {e}"))?;
    // Path inside the image → file on this host.
    let mut files = BTreeMap::from([(HELPER_BINARY.to_owned(), binary.to_owned())]);
    if let Some(interp) = elf_interpreter(&mut file)? {
        let out = std::process::Command::new(&interp)
            .arg("--list")
            .arg(binary)
            .output()
            .map_err(|e| format!("cannot run the ELF interpreter {interp}: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "{interp} --list failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        for lib in libraries(&String::from_utf8_lossy(&out.stdout))? {
            files.insert(lib.clone(), PathBuf::from(lib));
        }
        files.insert(interp.clone(), PathBuf::from(interp));
    }
    let mut dirs = BTreeSet::new();
    for path in files.keys() {
        let mut p = Path::new(path);
        while let Some(parent) = p.parent().filter(|d| *d != Path::new("/")) {
            dirs.insert(parent.to_owned());
            p = parent;
        }
    }
    let mut tar = tar::Builder::new(Vec::new());
    let dir = |path: &Path, mode: u32, tar: &mut tar::Builder<Vec<u8>>| {
        let mut h = header(tar::EntryType::Directory, mode, 0);
        tar.append_data(&mut h, path.strip_prefix("/").unwrap_or(path), io::empty())
            .map_err(|e| format!("cannot add {} to the image: {e}", path.display()))
    };
    dir(Path::new("/tmp"), 0o1777, &mut tar)?;
    for d in &dirs {
        dir(d, 0o755, &mut tar)?;
    }
    for (inside, host) in &files {
        // Opened through symlinks: the image holds the file itself.
        let f = std::fs::File::open(host)
            .map_err(|e| format!("cannot read {}: {e}", host.display()))?;
        let size = f
            .metadata()
            .map_err(|e| format!("cannot read {}: {e}", host.display()))?
            .len();
        let mut h = header(tar::EntryType::Regular, 0o755, size);
        tar.append_data(&mut h, inside.trim_start_matches('/'), f)
            .map_err(|e| format!("cannot add {} to the image: {e}", host.display()))?;
    }
    tar.into_inner()
        .map_err(|e| format!("cannot finish the image archive: {e}"))
}

fn header(kind: tar::EntryType, mode: u32, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_size(size);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    h
}

/// The path in the binary's `PT_INTERP` program header; `None` for a static binary.
/// Only 64-bit little-endian ELF files are read.
fn elf_interpreter<R: Read + Seek>(r: &mut R) -> Result<Option<String>, String> {
    const PT_INTERP: u32 = 3;
    let bad = |e: io::Error| format!("not a readable ELF file: {e}");
    let mut eh = [0u8; 64];
    r.read_exact(&mut eh).map_err(bad)?;
    if eh[..4] != *b"\x7fELF" {
        return Err("not an ELF file".to_owned());
    }
    if eh[4] != 2 || eh[5] != 1 {
        return Err(format!(
            "only 64-bit little-endian ELF files are supported (class {}, data {})",
            eh[4], eh[5]
        ));
    }
    let phoff = u64::from_le_bytes(eh[32..40].try_into().map_err(|_| "short header")?);
    let phentsize = u64::from(u16::from_le_bytes([eh[54], eh[55]]));
    let phnum = u64::from(u16::from_le_bytes([eh[56], eh[57]]));
    if phentsize < 56 {
        return Err(format!("program header entries of {phentsize} bytes"));
    }
    for i in 0..phnum {
        let mut ph = [0u8; 56];
        r.seek(SeekFrom::Start(phoff + i * phentsize))
            .map_err(bad)?;
        r.read_exact(&mut ph).map_err(bad)?;
        if u32::from_le_bytes([ph[0], ph[1], ph[2], ph[3]]) != PT_INTERP {
            continue;
        }
        let field = |at: usize| ph[at..at + 8].try_into().map(u64::from_le_bytes);
        let offset = field(8).map_err(|_| "short program header")?;
        let size = field(32).map_err(|_| "short program header")?;
        if size == 0 || size > 4096 {
            return Err(format!("PT_INTERP of {size} bytes"));
        }
        let mut path = vec![0u8; usize::try_from(size).map_err(|e| e.to_string())?];
        r.seek(SeekFrom::Start(offset)).map_err(bad)?;
        r.read_exact(&mut path).map_err(bad)?;
        let end = path.iter().position(|b| *b == 0).unwrap_or(path.len());
        let path = String::from_utf8(path[..end].to_vec())
            .map_err(|_| "PT_INTERP is not UTF-8".to_owned())?;
        if !path.starts_with('/') {
            return Err(format!("PT_INTERP `{path}` is not an absolute path"));
        }
        return Ok(Some(path));
    }
    Ok(None)
}

/// The resolved library paths in `ld.so --list` output (`name => /path (0x…)`); an error
/// naming the libraries that were not found.
fn libraries(list: &str) -> Result<Vec<String>, String> {
    let mut found = Vec::new();
    let mut missing = Vec::new();
    for line in list.lines() {
        let Some((name, rest)) = line.split_once("=>") else {
            continue; // the vDSO, the interpreter itself
        };
        let path = rest.trim().split(" (").next().unwrap_or("").trim();
        if path.starts_with('/') {
            found.push(path.to_owned());
        } else {
            missing.push(name.trim().to_owned());
        }
    }
    if missing.is_empty() {
        Ok(found)
    } else {
        Err(format!("libraries not found: {}", missing.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ELF64 header with one program header: PT_INTERP → `interp`.
    fn elf(class: u8, interp: &[u8]) -> Vec<u8> {
        let mut f = vec![0u8; 64 + 56];
        f[..4].copy_from_slice(b"\x7fELF");
        (f[4], f[5]) = (class, 1);
        f[32..40].copy_from_slice(&64u64.to_le_bytes());
        f[54..56].copy_from_slice(&56u16.to_le_bytes());
        f[56..58].copy_from_slice(&1u16.to_le_bytes());
        f[64..68].copy_from_slice(&3u32.to_le_bytes());
        f[72..80].copy_from_slice(&120u64.to_le_bytes());
        f[96..104].copy_from_slice(&(interp.len() as u64).to_le_bytes());
        f.extend_from_slice(interp);
        f
    }

    #[test]
    fn the_interpreter_is_read_from_the_program_headers() {
        let mut f = io::Cursor::new(elf(2, b"/lib64/ld-linux-x86-64.so.2\0"));
        let interp = elf_interpreter(&mut f).expect("an ELF file");
        assert_eq!(interp.as_deref(), Some("/lib64/ld-linux-x86-64.so.2"));
        let mut this = std::fs::File::open("/proc/self/exe").expect("this test binary");
        let own = elf_interpreter(&mut this).expect("an ELF file");
        assert!(own.is_some_and(|p| p.starts_with('/')));
    }

    #[test]
    fn other_files_are_refused_clearly() {
        let e = elf_interpreter(&mut io::Cursor::new(elf(1, b"/lib/ld.so\0"))).unwrap_err();
        assert!(e.contains("64-bit little-endian"), "{e}");
        let e = elf_interpreter(&mut io::Cursor::new(b"#!/bin/sh\n".repeat(10))).unwrap_err();
        assert_eq!(e, "not an ELF file");
        let e = elf_interpreter(&mut io::Cursor::new(b"\x7fELF".to_vec())).unwrap_err();
        assert!(e.contains("not a readable ELF file"), "{e}");
    }

    #[test]
    fn resolved_libraries_are_listed_and_missing_ones_named() {
        let list = "\tlinux-vdso.so.1 (0x00007ffd)\n\
            \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f01)\n\
            \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f02)\n\
            \t/lib64/ld-linux-x86-64.so.2 (0x00007f03)\n";
        assert_eq!(
            libraries(list).expect("all found"),
            [
                "/lib/x86_64-linux-gnu/libgcc_s.so.1",
                "/lib/x86_64-linux-gnu/libc.so.6"
            ]
        );
        let e = libraries("\tlibfoo.so.1 => not found\n").unwrap_err();
        assert_eq!(e, "libraries not found: libfoo.so.1");
    }
}
