//! Slice "open account": an account number is opened once.

use factstr::{EventStore, EventStoreError};

use crate::facts;

pub(crate) fn open_account(
    store: &dyn EventStore,
    account: &str,
    owner: &str,
) -> Result<String, String> {
    let context = facts::query([facts::opening_of(account)]);
    let seen = store.query(&context).map_err(|error| error.to_string())?;
    if !seen.event_records.is_empty() {
        return Err(format!("account {account} is already open"));
    }
    match store.append_if(
        vec![facts::account_opened(account, owner)],
        &context,
        seen.current_context_version,
    ) {
        Ok(_) => Ok(format!("opened {account} for {owner}")),
        Err(EventStoreError::ConditionalAppendConflict { .. }) => {
            Err(format!("account {account} was just opened"))
        }
        Err(error) => Err(error.to_string()),
    }
}

/// Whether `account` is open (used by slices that need an open account).
pub(crate) fn is_open(records: &[factstr::EventRecord]) -> bool {
    records
        .iter()
        .any(|record| record.event_type == facts::ACCOUNT_OPENED)
}
