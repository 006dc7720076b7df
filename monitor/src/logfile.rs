//! Size-based log rotation with a retention count: `mantisd.log` is renamed to
//! `mantisd.log.1` (older ones shift up, the oldest beyond `files_kept` is deleted) before a
//! write would take it past `file_bytes_max`. The format (JSON or text) is the subscriber's.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

pub struct RotatingFile {
    path: PathBuf,
    file: File,
    written_bytes: u64,
    file_bytes_max: u64,
    files_kept: usize,
}

impl RotatingFile {
    pub fn open(path: &Path, file_bytes_max: u64, files_kept: usize) -> std::io::Result<Self> {
        assert!(file_bytes_max > 0, "file_bytes_max must be positive");
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let written_bytes = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            file,
            written_bytes,
            file_bytes_max,
            files_kept,
        })
    }

    fn numbered(&self, n: usize) -> PathBuf {
        let mut name = self.path.as_os_str().to_owned();
        name.push(format!(".{n}"));
        PathBuf::from(name)
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        self.file.flush()?;
        if self.files_kept == 0 {
            self.file = File::create(&self.path)?;
        } else {
            let _ = std::fs::remove_file(self.numbered(self.files_kept));
            for n in (1..self.files_kept).rev() {
                let from = self.numbered(n);
                if from.exists() {
                    std::fs::rename(&from, self.numbered(n + 1))?;
                }
            }
            std::fs::rename(&self.path, self.numbered(1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.written_bytes = 0;
        Ok(())
    }
}

impl Write for RotatingFile {
    /// Whole buffers go to one file: a log line is never split across a rotation.
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.written_bytes > 0 && self.written_bytes + buf.len() as u64 > self.file_bytes_max {
            self.rotate()?;
        }
        self.file.write_all(buf)?;
        self.written_bytes += buf.len() as u64;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}
