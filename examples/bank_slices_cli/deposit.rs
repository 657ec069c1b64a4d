//! Slice "deposit": money goes into an open account.

use factstr::{EventStore, EventStoreError};

use crate::{facts, open_account};

pub(crate) fn deposit(
    store: &dyn EventStore,
    account: &str,
    amount: i64,
) -> Result<String, String> {
    // The decision only depends on the account being open.
    let context = facts::query([facts::opening_of(account)]);
    let seen = store.query(&context).map_err(|error| error.to_string())?;
    if !open_account::is_open(&seen.event_records) {
        return Err(format!("account {account} is not open"));
    }
    match store.append_if(
        vec![facts::money_deposited(account, amount)],
        &context,
        seen.current_context_version,
    ) {
        Ok(_) => Ok(format!("deposited {amount} into {account}")),
        Err(EventStoreError::ConditionalAppendConflict { .. }) => {
            Err("the account changed; try again".to_owned())
        }
        Err(error) => Err(error.to_string()),
    }
}
