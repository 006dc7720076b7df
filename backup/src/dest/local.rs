//! A destination on a local (or mounted) filesystem: one file per object.

use std::io::Write;
use std::path::{Path, PathBuf};

use super::{check_name, Destination};
use crate::error::{BackupError, Result};

pub struct LocalDir {
    root: PathBuf,
}

impl LocalDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalDir { root: root.into() }
    }

    pub fn path_of(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

impl Destination for LocalDir {
    /// Temporary file, fsync, rename, directory fsync: a crash leaves the old object or the
    /// new one, never a torn one under the real name.
    fn put(&self, name: &str, data: &[u8]) -> Result<()> {
        check_name(&self.describe(), name)?;
        let path = self.path_of(name);
        let dir = path
            .parent()
            .ok_or_else(|| BackupError::local(&path, "no parent directory"))?;
        std::fs::create_dir_all(dir).map_err(|e| BackupError::local(dir, e))?;
        let tmp = path.with_extension("tmp-upload");
        let mut f = std::fs::File::create(&tmp).map_err(|e| BackupError::local(&tmp, e))?;
        f.write_all(data).map_err(|e| BackupError::local(&tmp, e))?;
        f.sync_all().map_err(|e| BackupError::local(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| BackupError::local(&path, e))?;
        sync_dir(dir).map_err(|e| BackupError::local(dir, e))
    }

    fn get(&self, name: &str) -> Result<Vec<u8>> {
        check_name(&self.describe(), name)?;
        let path = self.path_of(name);
        std::fs::read(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                BackupError::NotFound {
                    destination: self.describe(),
                    object: name.to_string(),
                }
            } else {
                BackupError::local(&path, e)
            }
        })
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>> {
        let mut out = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let entries = match std::fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(BackupError::local(&dir, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| BackupError::local(&dir, e))?;
                let path = entry.path();
                let kind = entry
                    .file_type()
                    .map_err(|e| BackupError::local(&path, e))?;
                if kind.is_dir() {
                    stack.push(path);
                    continue;
                }
                let Ok(rel) = path.strip_prefix(&self.root) else {
                    continue;
                };
                let name = rel.to_string_lossy().replace('\\', "/");
                if name.starts_with(prefix) && !name.ends_with(".tmp-upload") {
                    out.push(name);
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn delete(&self, name: &str) -> Result<()> {
        check_name(&self.describe(), name)?;
        let path = self.path_of(name);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(BackupError::local(&path, e)),
        }
    }

    fn describe(&self) -> String {
        self.root.display().to_string()
    }
}
