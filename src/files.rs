//! Reading a user-named file with a bound, so `/dev/zero` or a huge file is refused with its
//! size instead of growing the process until it is killed.

use std::io::Read;
use std::path::Path;

/// The text of `path`, refused when it is longer than `max` bytes or not UTF-8.
pub fn read_bounded(path: &Path, max: u64) -> Result<String, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot read: {e}"))?;
    let mut bytes = Vec::new();
    file.take(max.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read: {e}"))?;
    if bytes.len() as u64 > max {
        return Err(format!("is longer than {max} bytes, the limit"));
    }
    String::from_utf8(bytes).map_err(|e| format!("is not UTF-8 text: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endless_and_long_files_are_refused() {
        let err = read_bounded(Path::new("/dev/zero"), 1024).unwrap_err();
        assert!(err.contains("longer than 1024 bytes"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, "abc").unwrap();
        assert_eq!(read_bounded(&path, 3).unwrap(), "abc");
        assert!(read_bounded(&path, 2).is_err());
    }
}
