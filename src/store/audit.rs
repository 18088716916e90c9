//! The store's side of the audit trail (src/admin/audit.rs): each concert's list of recorded
//! admin changes, written with the change's event in one call (audit.lua).

use super::conn::timed;
use super::keys::Part;
use super::{QueueStore, StoreError};
use crate::ids::ConcertId;

impl QueueStore {
    /// Records an admin change of `concert` (`action`: a JSON object with at least one field)
    /// in its outbox and at the head of its audit list, which keeps the newest `keep`; how many
    /// entries the cap dropped. One script call (audit.lua).
    pub async fn record_admin_action(&self, concert: &ConcertId, action: &str, keep: u64) -> Result<u64, StoreError> {
        debug_assert!(action.starts_with('{') && action.len() > 2, "a JSON object with a field");
        let mut c = self.conn().await?;
        let mut inv = self.scripts.audit.prepare_invoke();
        inv.key(self.key(concert, Part::Audit));
        self.outbox_keys(&mut inv, concert);
        inv.arg(action).arg(keep.max(1));
        timed(inv.invoke_async(&mut c)).await
    }

    /// The audit list's length and its entries `offset .. offset + limit`, newest first: one
    /// LLEN and one LRANGE of at most `limit` entries.
    pub async fn admin_actions(
        &self,
        concert: &ConcertId,
        offset: u64,
        limit: u64,
    ) -> Result<(u64, Vec<String>), StoreError> {
        let mut c = self.conn().await?;
        let key = self.key(concert, Part::Audit);
        let (total, entries): (u64, Vec<String>) = timed(
            redis::pipe()
                .cmd("LLEN")
                .arg(&key)
                .cmd("LRANGE")
                .arg(&key)
                .arg(offset)
                .arg(offset + limit.max(1) - 1)
                .query_async(&mut c),
        )
        .await?;
        Ok((total, entries))
    }
}
