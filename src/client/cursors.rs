//! Cursor calls of the client (`machine/cursors.rs`): where an importer keeps its position.

use super::Client;
use crate::error::Result;
use crate::proto::pb;

impl Client {
    /// The cursor named `name` (version 0 and an empty value when it does not exist).
    pub async fn get_cursor(&self, name: &str) -> Result<pb::CursorInfo> {
        self.call(true, |mut c| {
            let req = pb::GetCursorRequest {
                name: name.to_string(),
                stale: false,
            };
            async move { c.get_cursor(req).await }
        })
        .await
    }

    /// Puts a cursor's value (empty deletes it), compare-and-set when `expected_version` is
    /// given; answers the cursor as it now is.
    pub async fn put_cursor(
        &self,
        name: &str,
        value: Vec<u8>,
        expected_version: Option<u64>,
    ) -> Result<pb::CursorInfo> {
        self.call(false, |mut c| {
            let req = pb::PutCursorRequest {
                name: name.to_string(),
                value: value.clone(),
                expected_version,
            };
            async move { c.put_cursor(req).await }
        })
        .await
    }
}
