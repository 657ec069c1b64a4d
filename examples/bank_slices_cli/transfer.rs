//! Slice "transfer": money moves between two open accounts in one fact,
//! decided on both accounts at once: no saga, no lost money.

use factstr::{EventStore, EventStoreError};

use crate::{balance, facts};

pub(crate) fn transfer(
    store: &dyn EventStore,
    from: &str,
    to: &str,
    amount: i64,
) -> Result<String, String> {
    if from == to {
        return Err("a transfer needs two different accounts".to_owned());
    }
    // Both balances are part of the decision: the sender's must cover the
    // amount, the receiver's must be able to hold it.
    let [from_moves, from_transfers] = facts::money_of(from);
    let [to_moves, to_transfers] = facts::money_of(to);
    let context = facts::query([
        facts::opening_of(from),
        facts::opening_of(to),
        from_moves,
        from_transfers,
        to_moves,
        to_transfers,
    ]);
    loop {
        let seen = store.query(&context).map_err(|error| error.to_string())?;
        for account in [from, to] {
            let opened = seen.event_records.iter().any(|record| {
                record.event_type == facts::ACCOUNT_OPENED && record.payload["account"] == account
            });
            if !opened {
                return Err(format!("account {account} is not open"));
            }
        }
        let available = balance::fold(from, &seen.event_records)?;
        if available < amount {
            return Err(format!("{from} has {available}, cannot transfer {amount}"));
        }
        let receiving = balance::fold(to, &seen.event_records)?;
        balance::after_receiving(to, receiving, amount)?;
        match store.append_if(
            vec![facts::money_transferred(from, to, amount)],
            &context,
            seen.current_context_version,
        ) {
            Ok(_) => return Ok(format!("transferred {amount} from {from} to {to}")),
            Err(EventStoreError::ConditionalAppendConflict { .. }) => continue,
            Err(error) => return Err(error.to_string()),
        }
    }
}
