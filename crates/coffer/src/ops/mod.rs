//! The operations, each a function over engines and stores.

pub mod backup;
pub mod collection;
pub mod export;
pub mod import;
mod load;
mod pipeline;
pub mod rekey;
pub mod restore;
pub mod verify;

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::store::Store;

/// `path` with its last component's symbolic links followed (also to a
/// file that does not exist yet) and its directory made canonical, when
/// that directory exists.
fn real_target(path: &Path) -> PathBuf {
    let mut path = path.to_path_buf();
    for _ in 0..40 {
        match std::fs::read_link(&path) {
            Ok(link) => {
                path = match path.parent() {
                    Some(dir) if link.is_relative() => dir.join(link),
                    _ => link,
                }
            }
            Err(_) => break,
        }
    }
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    match (dir.canonicalize(), path.file_name()) {
        (Ok(dir), Some(name)) => dir.join(name),
        _ => path,
    }
}

/// Refuse a target database file (`target`, from [`crate::engine::Address::file`])
/// that lies inside the local archive or repository `src` it would be
/// `verb` (restored, imported) from: it would add a file to the archive.
pub(crate) fn refuse_target_inside(src: &Store, target: Option<&Path>, verb: &str) -> Result<()> {
    let (Some(dir), Some(target)) = (src.local_dir(), target) else {
        return Ok(());
    };
    if real_target(target).starts_with(dir) {
        return Err(Error::invalid(format!(
            "{} lies inside the archive at {} that it would be {verb} from; give a target outside it (nothing was {verb})",
            target.display(),
            src.url()
        )));
    }
    Ok(())
}
