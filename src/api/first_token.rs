//! The admin token of a first start: with no token configured (`[auth] tokens` empty and
//! no `[auth] token_file`), the daemon generates one into `<data dir>/admin.token`
//! (mode 0600) and accepts it as `admin`, so a newcomer is not locked out of the API. It
//! is generated once and reused at every later start. Any configured token switches this
//! off entirely: the file is neither created nor honoured.
//!
//! The file is published atomically: written and fsynced under a temporary name created
//! with mode 0600 (never wider, not even for an instant), then hard-linked to its name,
//! which fails rather than replace a file another start published first. The CLI on the
//! same host reads it when `SLUICE_TOKEN` is unset (`crate::cli`). The token itself is
//! never logged, only the file's path.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use rand::Rng as _;

use super::auth::{AuthError, Tokens};
use crate::config::{ApiToken, AuthSettings, Secret, Settings};
use crate::domain::Role;

/// The file's name in the data dir.
pub const FILE_NAME: &str = "admin.token";

/// The actor name of the generated token in the audit trail.
pub const ACTOR: &str = "admin";

/// Where the first-start admin token lives for `settings`.
pub fn path(settings: &Settings) -> PathBuf {
    settings.data.dir.join(FILE_NAME)
}

/// True when the operator configured tokens, which switches the generated one off.
pub fn tokens_configured(auth: &AuthSettings) -> bool {
    !auth.tokens.is_empty() || auth.token_file.is_some()
}

/// The daemon's tokens: the configured ones, or else the first-start admin token
/// (generated now if there is none yet). Logs which, naming the file, never the token.
pub fn daemon_tokens(settings: &Settings) -> Result<Tokens, AuthError> {
    let file = path(settings);
    if tokens_configured(&settings.auth) {
        if file.exists() {
            tracing::warn!(
                path = %file.display(),
                "[auth] tokens are configured: the first-start admin token file is not \
                 accepted; delete it"
            );
        }
        return Tokens::load(&settings.auth);
    }
    let (token, created) = load_or_create(&file)?;
    if created {
        tracing::warn!(
            path = %file.display(),
            "no API tokens configured: generated an admin token into this file (mode 0600); \
             the CLI on this host uses it when SLUICE_TOKEN is unset. Configure [auth] tokens \
             to replace it"
        );
    } else {
        tracing::info!(
            path = %file.display(),
            "no API tokens configured: accepting the admin token in this file"
        );
    }
    Ok(Tokens::new(&[ApiToken {
        name: ACTOR.to_owned(),
        role: Role::Admin,
        token,
    }]))
}

/// Reads the token at `file`, or generates and publishes one. Returns whether it was
/// created now.
pub fn load_or_create(file: &Path) -> Result<(Secret, bool), AuthError> {
    match read(file) {
        Ok(token) => return Ok((token, false)),
        Err(AuthError::Read { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let token = Secret::new(format!(
        "sla_{}",
        hex::encode(rand::rng().random::<[u8; 32]>())
    ));
    match publish(file, &token) {
        Ok(()) => Ok((token, true)),
        // Another start published first: use its token.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((read(file)?, false)),
        Err(source) => Err(AuthError::Create {
            path: file.to_owned(),
            source,
        }),
    }
}

/// The token in `file`. Refused when any user but its owner may read the file, or when
/// it holds no token of at least 16 characters.
pub fn read(file: &Path) -> Result<Secret, AuthError> {
    let read_err = |source| AuthError::Read {
        path: file.to_owned(),
        source,
    };
    let meta = std::fs::metadata(file).map_err(read_err)?;
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(AuthError::NotPrivate {
            path: file.to_owned(),
        });
    }
    let text = std::fs::read_to_string(file).map_err(read_err)?;
    let token = text.trim();
    if token.len() < 16 {
        return Err(AuthError::Parse {
            path: file.to_owned(),
            message: "holds no token of at least 16 characters; delete the file to have \
                      a new one generated"
                .to_owned(),
        });
    }
    Ok(Secret::new(token))
}

/// Writes `token` to a temporary file created with mode 0600, fsyncs it, and links it to
/// `file` (failing with `AlreadyExists` if `file` exists), then fsyncs the directory.
fn publish(file: &Path, token: &Secret) -> std::io::Result<()> {
    let dir = file.parent().unwrap_or_else(|| Path::new("."));
    let tmp = dir.join(format!(
        ".{FILE_NAME}.{}.{:08x}.tmp",
        std::process::id(),
        rand::rng().random::<u32>()
    ));
    let written = (|| {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(token.expose().as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::hard_link(&tmp, file)
    })();
    let removed = std::fs::remove_file(&tmp);
    written?;
    removed?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn generated_once_private_and_reused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        let (first, created) = load_or_create(&file).unwrap();
        assert!(created);
        assert_eq!(mode(&file), 0o600);
        assert!(first.expose().starts_with("sla_") && first.expose().len() == 68);
        let (again, created) = load_or_create(&file).unwrap();
        assert!(!created);
        assert_eq!(again, first);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, [FILE_NAME], "no temporary file is left behind");
    }

    #[test]
    fn a_file_others_may_read_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(FILE_NAME);
        load_or_create(&file).unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o640)).unwrap();
        let e = load_or_create(&file).err().unwrap().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        assert!(
            !e.contains("sla_"),
            "the message never shows the token: {e}"
        );
    }

    #[test]
    fn configured_tokens_switch_it_off() {
        let mut auth = AuthSettings::default();
        assert!(!tokens_configured(&auth));
        auth.token_file = Some("/etc/sluice/tokens.toml".into());
        assert!(tokens_configured(&auth));
    }
}
