//! Where an import keeps its position: a cursor in raftline itself (`GetCursor`/`PutCursor`,
//! `machine/cursors.rs`), named after the source (`import:redis:HOST:PORT/DB:list:KEY`). The
//! import reads it at the start, and puts the new position after each batch raftline
//! acknowledged, compare-and-set on the version it read, so two imports of the same source at
//! once stop with a clear error instead of moving one position back and forth. A dry run
//! reads the cursor and puts nothing; `--from-start` ignores what is stored (and then moves it
//! like any run).
//!
//! The cursor saves work, not correctness: a crash between a batch's acknowledgement and the
//! put re-sends that batch on the next run, and the cluster answers `duplicate` for each job,
//! since the idempotency keys come from the source's own identity.

use std::time::Duration;

use crate::client::Client;
use crate::error::{Error, Result};
use crate::machine::limits;

/// Tries of one put when the cluster is unavailable (a leader change): each waits
/// `PUT_RETRY_MS` and reads the cursor back first, since the failed put may have been applied.
const PUT_TRIES_MAX: u32 = 60;
/// Wait between two tries of a put.
const PUT_RETRY_MS: u64 = 500;

/// A source's cursor as this import knows it.
pub struct Position<'a> {
    client: &'a Client,
    /// The cursor's name.
    pub name: String,
    /// The version this import read or put last.
    version: u64,
    /// Puts nothing (a dry run).
    read_only: bool,
}

/// `text` with every byte that is not printable ASCII, and `%`, as `%XX`, so any Redis key
/// fits a cursor name.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_graphic() && b != b'%' {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

impl<'a> Position<'a> {
    /// Reads the cursor `name`: the position and the stored value (`None` when there is none,
    /// or with `from_start`).
    pub async fn load(
        client: &'a Client,
        name: String,
        from_start: bool,
        read_only: bool,
    ) -> Result<(Position<'a>, Option<Vec<u8>>)> {
        if name.len() > limits::CURSOR_NAME_BYTES_MAX {
            return Err(Error::InvalidArgument {
                field: "from".into(),
                message: format!(
                    "the import's cursor name is {} bytes, the limit is {} \
                     (CURSOR_NAME_BYTES_MAX): use a shorter key or URL",
                    name.len(),
                    limits::CURSOR_NAME_BYTES_MAX
                ),
            });
        }
        let info = client.get_cursor(&name).await?;
        let value = (info.version > 0 && !from_start).then_some(info.value);
        let position = Position {
            client,
            name,
            version: info.version,
            read_only,
        };
        Ok((position, value))
    }

    /// Puts `value` as the new position (nothing in a dry run).
    pub async fn save(&mut self, value: Vec<u8>) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let expected = self.version;
        for _ in 0..PUT_TRIES_MAX {
            match self
                .client
                .put_cursor(&self.name, value.clone(), Some(expected))
                .await
            {
                Ok(info) => {
                    self.version = info.version;
                    return Ok(());
                }
                Err(Error::FailedPrecondition(_)) => {
                    // A put that failed over may have been applied after all: that is ours.
                    let info = self.client.get_cursor(&self.name).await?;
                    if info.version == expected + 1 && info.value == value {
                        self.version = info.version;
                        return Ok(());
                    }
                    return Err(Error::FailedPrecondition(format!(
                        "the cursor {} moved while this import ran (version {} now, {expected} \
                         read): is another import of the same source running? Its jobs are \
                         safe (idempotency keys); run again when it is done",
                        self.name, info.version
                    )));
                }
                Err(Error::Unavailable { .. }) => {
                    tokio::time::sleep(Duration::from_millis(PUT_RETRY_MS)).await;
                }
                Err(e) => return Err(e),
            }
        }
        Err(Error::unavailable(format!(
            "the cluster did not take the cursor {} in {} tries",
            self.name, PUT_TRIES_MAX
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Keys with spaces, `%` or bytes outside printable ASCII become a valid cursor name.
    #[test]
    fn escape_keeps_names_printable() {
        assert_eq!(escape("list:a b%\u{e9}"), "list:a%20b%25%C3%A9");
        assert!(escape("x\ty").bytes().all(|b| b.is_ascii_graphic()));
    }
}
