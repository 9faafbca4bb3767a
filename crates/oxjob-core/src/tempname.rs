//! Temporary files and directories that nobody can plant in advance.
//!
//! Every file oxjob writes is first written under a hidden temporary name beside its
//! target and renamed into place. The name carries 64 random bits, so another user
//! cannot guess it and plant a symlink (that oxjob would write through) or a file
//! (that would make the write fail) there; and the file is created exclusively
//! (`O_CREAT|O_EXCL`, plus `O_NOFOLLOW`), so even a guessed name is never followed.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, ErrorKind};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

/// How many names are tried before giving up (each collision is a 2^-64 event, or
/// someone filling the directory with guesses).
const ATTEMPTS: usize = 16;

/// 16 hex digits nobody outside this process can predict.
///
/// `RandomState` keys its SipHash with random bits taken from the operating system
/// once per thread; hashing a counter, the time and the process id with it gives a
/// fresh unpredictable value per call, without a dependency or `unsafe`.
pub fn random_token() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut hasher = RandomState::new().build_hasher();
    hasher.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    hasher.write_u32(std::process::id());
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    hasher.write_u128(now);
    format!("{:016x}", hasher.finish())
}

fn exclusive() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    }
    options
}

/// Create a new file named `.<target name>.<random>.oxjob-tmp` beside `target`,
/// exclusively. Returns the open file and its path.
pub fn create_beside(target: &Path) -> io::Result<(File, PathBuf)> {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut last = io::Error::new(ErrorKind::AlreadyExists, "no free temporary name");
    for _ in 0..ATTEMPTS {
        let temp = target.with_file_name(format!(".{name}.{}.oxjob-tmp", random_token()));
        match exclusive().open(&temp) {
            Ok(file) => return Ok((file, temp)),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => last = err,
            Err(err) => return Err(err),
        }
    }
    Err(last)
}

/// Create a new directory `<parent>/<prefix><random>` (`mkdir` never follows a
/// symlink and fails on an existing name). Returns its path.
pub fn create_dir_in(parent: &Path, prefix: &str) -> io::Result<PathBuf> {
    let mut last = io::Error::new(ErrorKind::AlreadyExists, "no free temporary name");
    for _ in 0..ATTEMPTS {
        let dir = parent.join(format!("{prefix}{}", random_token()));
        match fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(err) if err.kind() == ErrorKind::AlreadyExists => last = err,
            Err(err) => return Err(err),
        }
    }
    Err(last)
}

/// Create a new file in a directory this process just made (see [`create_dir_in`]):
/// still exclusive, so a name raced into it is refused rather than followed.
pub fn create_new(path: &Path) -> io::Result<File> {
    exclusive().open(path)
}

/// `create_dir_all`, returning the directories it made (outermost first), so that a
/// failed write can remove exactly what it added and leave nothing behind.
pub fn create_dirs(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut missing = Vec::new();
    let mut cursor = Some(dir);
    while let Some(path) = cursor {
        if path.as_os_str().is_empty() || path.is_dir() {
            break;
        }
        missing.push(path.to_path_buf());
        cursor = path.parent();
    }
    missing.reverse();
    let mut made = Vec::new();
    for path in missing {
        match fs::create_dir(&path) {
            Ok(()) => made.push(path),
            // Made meanwhile by a concurrent writer: theirs, not ours to remove.
            Err(err) if err.kind() == ErrorKind::AlreadyExists && path.is_dir() => {}
            Err(err) => {
                remove_dirs(&made);
                return Err(err);
            }
        }
    }
    Ok(made)
}

/// Remove directories made by [`create_dirs`], innermost first, while they are
/// empty (a concurrent writer may have put something in them meanwhile).
pub fn remove_dirs(made: &[PathBuf]) {
    for path in made.iter().rev() {
        if fs::remove_dir(path).is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_differ() {
        let a = random_token();
        let b = random_token();
        assert_eq!(a.len(), 16);
        assert_ne!(a, b);
    }

    #[cfg(unix)]
    #[test]
    fn never_follows_a_planted_symlink() {
        let dir = std::env::temp_dir().join(format!("oxjob-tempname-{}", random_token()));
        fs::create_dir_all(&dir).expect("mkdir");
        let victim = dir.join("victim");
        fs::write(&victim, b"keep").expect("write");
        let link = dir.join("planted");
        std::os::unix::fs::symlink(&victim, &link).expect("symlink");
        assert!(create_new(&link).is_err());
        assert_eq!(fs::read(&victim).expect("read"), b"keep");
        let (_, temp) = create_beside(&dir.join("target")).expect("temp");
        assert!(temp
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".target.")));
        let _ = fs::remove_dir_all(&dir);
    }
}
