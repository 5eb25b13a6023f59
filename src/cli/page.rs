//! Lists longer than one server page. The server answers at most [`LIST_LIMIT_MAX`] items
//! per call (and refuses a larger `limit`), so a `--limit` above it is read as several calls,
//! each starting after the last id of the one before, until the limit is reached or a page
//! comes back empty. A limit within one page is a single call, exactly as the user gave it (0
//! asks for the server's default). Pages are printed as they arrive, so a call failing after
//! the first page ends the command with its error after the items already printed.

use std::future::Future;

use crate::error::{Error, Result};
use crate::machine::limits::LIST_LIMIT_MAX;

/// Reads up to `limit` items with ids above `after`: `fetch(after, page_limit)` reads one
/// page, `id` names an item's id (the cursor) and `emit` receives each page in order.
pub async fn pages<T, F, Fut>(
    limit: u32,
    after: u64,
    mut fetch: F,
    id: impl Fn(&T) -> u64,
    mut emit: impl FnMut(&[T]),
) -> Result<()>
where
    F: FnMut(u64, u32) -> Fut,
    Fut: Future<Output = Result<Vec<T>>>,
{
    if limit <= LIST_LIMIT_MAX {
        emit(&fetch(after, limit).await?);
        return Ok(());
    }
    let mut left = limit;
    let mut after = after;
    while left > 0 {
        let mut page = fetch(after, left.min(LIST_LIMIT_MAX)).await?;
        page.truncate(left as usize);
        let Some(last) = page.last() else {
            break;
        };
        let last = id(last);
        if last <= after {
            return Err(Error::Internal(format!(
                "a list page after id {after} ended at id {last}: the server ignored the cursor"
            )));
        }
        after = last;
        left -= page.len() as u32;
        emit(&page);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A limit above the page size is read in pages that follow the cursor, and stops at
    /// the limit or at the end of the list; a limit within one page is one call as given.
    #[tokio::test]
    async fn list_pages_follow_the_cursor() {
        let items: Vec<u64> = (1..=2_500).collect();
        let calls = std::cell::RefCell::new(Vec::new());
        let fetch = |after: u64, limit: u32| {
            calls.borrow_mut().push((after, limit));
            assert!(limit <= LIST_LIMIT_MAX, "a page above the server's maximum");
            let page: Vec<u64> = items
                .iter()
                .copied()
                .filter(|&i| i > after)
                .take(limit as usize)
                .collect();
            async move { Ok(page) }
        };
        let mut seen = Vec::new();
        pages(2_100, 0, fetch, |&i| i, |p| seen.extend_from_slice(p))
            .await
            .unwrap();
        assert_eq!(seen, (1..=2_100).collect::<Vec<_>>());
        assert_eq!(*calls.borrow(), [(0, 1_000), (1_000, 1_000), (2_000, 100)]);

        calls.borrow_mut().clear();
        seen.clear();
        pages(
            u32::MAX,
            2_000,
            fetch,
            |&i| i,
            |p| seen.extend_from_slice(p),
        )
        .await
        .unwrap();
        assert_eq!(seen, (2_001..=2_500).collect::<Vec<_>>());
        assert_eq!(calls.borrow().last(), Some(&(2_500, 1_000)));

        calls.borrow_mut().clear();
        seen.clear();
        pages(0, 0, fetch, |&i| i, |p| seen.extend_from_slice(p))
            .await
            .unwrap();
        assert_eq!(*calls.borrow(), [(0, 0)]);
    }
}
