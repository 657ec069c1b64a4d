//! Slice "balance": the read model of what an account holds.

use factstr::{EventRecord, EventStore};

use crate::facts;

pub(crate) fn balance(store: &dyn EventStore, account: &str) -> Result<i64, String> {
    let records = store
        .query(&facts::query(facts::money_of(account)))
        .map_err(|error| error.to_string())?
        .event_records;
    fold(account, &records)
}

/// The balance of `account` after `records` (facts of other kinds or of other
/// accounts are ignored, so one query may serve several accounts).
///
/// Deposits and transfers refuse amounts that would take a balance past what
/// an `i64` holds, so a log written by this program never gets there; a log
/// written by someone else might, and is reported instead of overflowing.
pub(crate) fn fold(account: &str, records: &[EventRecord]) -> Result<i64, String> {
    records.iter().try_fold(0_i64, |balance, record| {
        let amount = record.payload["amount"].as_i64().unwrap_or(0);
        let own = record.payload["account"] == account;
        let next = match record.event_type.as_str() {
            facts::MONEY_DEPOSITED if own => balance.checked_add(amount),
            facts::MONEY_WITHDRAWN if own => balance.checked_sub(amount),
            facts::MONEY_TRANSFERRED if record.payload["from"] == account => {
                balance.checked_sub(amount)
            }
            facts::MONEY_TRANSFERRED if record.payload["to"] == account => {
                balance.checked_add(amount)
            }
            _ => Some(balance),
        };
        next.ok_or_else(|| {
            format!(
                "the balance of {account} leaves the range this bank can count \
                 (fact #{})",
                record.sequence_number
            )
        })
    })
}

/// What `account` holds after receiving `amount` on top of `available`, or
/// why it cannot receive it.
pub(crate) fn after_receiving(account: &str, available: i64, amount: i64) -> Result<i64, String> {
    available.checked_add(amount).ok_or_else(|| {
        format!(
            "{account} holds {available}; receiving {amount} would exceed the largest \
             balance this bank keeps ({})",
            i64::MAX
        )
    })
}
