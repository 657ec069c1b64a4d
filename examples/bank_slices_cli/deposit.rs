//! Slice "deposit": money goes into an open account, as long as its balance
//! can hold it.

use factstr::{EventStore, EventStoreError};

use crate::{balance, facts, open_account};

pub(crate) fn deposit(
    store: &dyn EventStore,
    account: &str,
    amount: i64,
) -> Result<String, String> {
    // The decision depends on the account being open and on its balance (a
    // balance has a largest value), so both are the context.
    let [moves, transfers] = facts::money_of(account);
    let context = facts::query([facts::opening_of(account), moves, transfers]);
    loop {
        let seen = store.query(&context).map_err(|error| error.to_string())?;
        if !open_account::is_open(&seen.event_records) {
            return Err(format!("account {account} is not open"));
        }
        let available = balance::fold(account, &seen.event_records)?;
        balance::after_receiving(account, available, amount)?;
        match store.append_if(
            vec![facts::money_deposited(account, amount)],
            &context,
            seen.current_context_version,
        ) {
            Ok(_) => return Ok(format!("deposited {amount} into {account}")),
            // Money moved on this account meanwhile: decide again on the new balance.
            Err(EventStoreError::ConditionalAppendConflict { .. }) => continue,
            Err(error) => return Err(error.to_string()),
        }
    }
}
