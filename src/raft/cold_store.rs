//! The cold tier's store on a node: the sled tree `cold` (see `machine/cold.rs` for what it
//! holds and why a fuzzy copy of it is exact). Sled is a place to keep records out of memory,
//! not the durability mechanism: the tree is cleared when the node opens and loaded from the
//! snapshot file, which is fsynced, and the log replayed after it writes the rest again.

use std::sync::Arc;

use crate::machine::cold::{Cold, Kv};

/// The name of the tree in the node's sled database.
pub const TREE: &str = "cold";

/// A sled tree as the cold tier's [`Kv`]. A sled error is fatal: the node stops (a failing or
/// full disk) rather than apply on a store that lost a write.
struct SledKv(sled::Tree);

fn fatal(e: sled::Error) -> ! {
    panic!("cold store (sled tree `{TREE}`): {e}; the node stops")
}

impl Kv for SledKv {
    fn insert(&self, key: &[u8], value: &[u8]) {
        self.0.insert(key, value).unwrap_or_else(|e| fatal(e));
    }

    fn remove(&self, key: &[u8]) {
        self.0.remove(key).unwrap_or_else(|e| fatal(e));
    }

    fn scan<'a>(
        &'a self,
        from: &[u8],
        to: &[u8],
    ) -> Box<dyn Iterator<Item = (Vec<u8>, Vec<u8>)> + 'a> {
        Box::new(self.0.range(from.to_vec()..to.to_vec()).map(|entry| {
            let (k, v) = entry.unwrap_or_else(|e| fatal(e));
            (k.to_vec(), v.to_vec())
        }))
    }

    fn last_in(&self, from: &[u8], to: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        // Forward: sled 0.34's reverse iteration is far slower, and the versions of one key
        // (what this is asked for) are few.
        self.0
            .range(from.to_vec()..to.to_vec())
            .last()
            .map(|entry| {
                let (k, v) = entry.unwrap_or_else(|e| fatal(e));
                (k.to_vec(), v.to_vec())
            })
    }

    fn clear(&self) {
        self.0.clear().unwrap_or_else(|e| fatal(e));
    }
}

/// The cold tier of the node whose sled database is `db`, emptied (it is loaded from the
/// snapshot next).
pub fn open(db: &sled::Db) -> Result<Cold, sled::Error> {
    let tree = db.open_tree(TREE)?;
    tree.clear()?;
    Ok(Cold::new(Arc::new(SledKv(tree))))
}
