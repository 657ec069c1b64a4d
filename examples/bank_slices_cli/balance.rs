//! Slice "balance": the read model of what an account holds.

use factstr::{EventRecord, EventStore};

use crate::facts;

pub(crate) fn balance(store: &dyn EventStore, account: &str) -> Result<i64, String> {
    let records = store
        .query(&facts::query(facts::money_of(account)))
        .map_err(|error| error.to_string())?
        .event_records;
    Ok(fold(account, &records))
}

/// The balance of `account` after `records` (facts of other kinds are ignored).
pub(crate) fn fold(account: &str, records: &[EventRecord]) -> i64 {
    records.iter().fold(0, |balance, record| {
        let amount = record.payload["amount"].as_i64().unwrap_or(0);
        match record.event_type.as_str() {
            facts::MONEY_DEPOSITED => balance + amount,
            facts::MONEY_WITHDRAWN => balance - amount,
            facts::MONEY_TRANSFERRED if record.payload["from"] == account => balance - amount,
            facts::MONEY_TRANSFERRED if record.payload["to"] == account => balance + amount,
            _ => balance,
        }
    })
}
