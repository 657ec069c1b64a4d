//! Slice "withdraw": money leaves an open account, never below zero.

use factstr::{EventStore, EventStoreError};

use crate::{balance, facts, open_account};

pub(crate) fn withdraw(
    store: &dyn EventStore,
    account: &str,
    amount: i64,
) -> Result<String, String> {
    let [moves, transfers] = facts::money_of(account);
    let context = facts::query([facts::opening_of(account), moves, transfers]);
    loop {
        let seen = store.query(&context).map_err(|error| error.to_string())?;
        if !open_account::is_open(&seen.event_records) {
            return Err(format!("account {account} is not open"));
        }
        let available = balance::fold(account, &seen.event_records)?;
        if available < amount {
            return Err(format!(
                "{account} has {available}, cannot withdraw {amount}"
            ));
        }
        match store.append_if(
            vec![facts::money_withdrawn(account, amount)],
            &context,
            seen.current_context_version,
        ) {
            Ok(_) => return Ok(format!("withdrew {amount} from {account}")),
            // Someone moved money on this account meanwhile: decide again on the new balance.
            Err(EventStoreError::ConditionalAppendConflict { .. }) => continue,
            Err(error) => return Err(error.to_string()),
        }
    }
}
