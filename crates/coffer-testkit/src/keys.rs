//! age keys for the encryption tests.

use std::path::{Path, PathBuf};

use coffer::crypt::{DataKey, ExposeSecret};

/// A new age identity file `name` in `dir`, readable by its owner only;
/// its path and its public key (`age1…`).
pub fn identity(dir: &Path, name: &str) -> (PathBuf, String) {
    let key = DataKey::generate();
    let path = dir.join(name);
    std::fs::write(&path, key.file_text().expose_secret()).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    (path, key.recipient().to_string())
}

/// A passphrase file `name` in `dir`, readable by its owner only.
pub fn passphrase(dir: &Path, name: &str, passphrase: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{passphrase}\n")).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}
