//! Slice "history": an account's facts in the order they happened.

use factstr::EventStore;

use crate::facts;

pub(crate) fn history(store: &dyn EventStore, account: &str) -> Result<Vec<String>, String> {
    let [moves, transfers] = facts::money_of(account);
    let records = store
        .query(&facts::query([
            facts::opening_of(account),
            moves,
            transfers,
        ]))
        .map_err(|error| error.to_string())?
        .event_records;
    Ok(records
        .iter()
        .map(|record| {
            format!(
                "#{:<4} {}  {:<18} {}",
                record.sequence_number,
                record.occurred_at.format("%Y-%m-%d %H:%M:%S%.3f"),
                record.event_type,
                record.payload
            )
        })
        .collect())
}
