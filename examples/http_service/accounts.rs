//! The commands: open an account, deposit, withdraw. Each decides on the
//! facts of one account and appends through `AsyncEventStore`.

use factstr::{AsyncEventStore, EventFilter, EventQuery, EventStoreError, NewEvent};
use futures::TryStreamExt;
use serde_json::json;

pub(crate) const ACCOUNT_OPENED: &str = "account-opened";
pub(crate) const MONEY_DEPOSITED: &str = "money-deposited";
pub(crate) const MONEY_WITHDRAWN: &str = "money-withdrawn";

/// The largest amount one deposit or withdrawal may move: balances stay far
/// from the limits of `i64`.
pub(crate) const MAX_AMOUNT: i64 = 1_000_000_000;

/// Every fact about `account`: the context of its commands, and its history.
pub(crate) fn facts_of(account: &str) -> EventQuery {
    EventQuery::all().with_filters([EventFilter::for_event_types([
        ACCOUNT_OPENED,
        MONEY_DEPOSITED,
        MONEY_WITHDRAWN,
    ])
    .with_payload_predicates([json!({ "account": account })])])
}

/// What a command decided, when it did not succeed.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// The amount is not a whole number from 1 to [`MAX_AMOUNT`].
    InvalidAmount(i64),
    /// The account name is empty or longer than 100 bytes.
    InvalidAccount,
    /// No such account has been opened.
    UnknownAccount,
    /// The account is open already.
    AlreadyOpen,
    /// The balance does not cover the withdrawal.
    InsufficientFunds { balance: i64 },
    /// The store failed.
    Store(EventStoreError),
}

impl From<EventStoreError> for Refusal {
    fn from(error: EventStoreError) -> Self {
        Self::Store(error)
    }
}

/// The state of one account as its facts tell it, read page by page, and
/// the context version to append against.
struct Account {
    opened: bool,
    balance: i64,
    context_version: Option<u64>,
}

/// Folds the facts of `account` a page at a time: an account with a long
/// history never sits in memory whole.
async fn read_account(store: &dyn AsyncEventStore, account: &str) -> Result<Account, Refusal> {
    const PAGE: usize = 500;
    let context = facts_of(account);
    let mut state = Account {
        opened: false,
        balance: 0,
        context_version: None,
    };
    let mut pages = std::pin::pin!(factstr::query_pages(store, &context, PAGE));
    while let Some(page) = pages.try_next().await? {
        for record in &page.event_records {
            let amount = record.payload["amount"].as_i64().unwrap_or(0);
            match record.event_type.as_str() {
                ACCOUNT_OPENED => state.opened = true,
                MONEY_DEPOSITED => state.balance = state.balance.saturating_add(amount),
                MONEY_WITHDRAWN => state.balance = state.balance.saturating_sub(amount),
                _ => {}
            }
        }
        // The last page's version covers every fact read before it: pages
        // only ever see more facts, never fewer.
        state.context_version = page.current_context_version;
    }
    Ok(state)
}

fn check_account(account: &str) -> Result<(), Refusal> {
    if account.is_empty() || account.len() > 100 {
        return Err(Refusal::InvalidAccount);
    }
    Ok(())
}

fn check_amount(amount: i64) -> Result<(), Refusal> {
    if !(1..=MAX_AMOUNT).contains(&amount) {
        return Err(Refusal::InvalidAmount(amount));
    }
    Ok(())
}

/// Opens `account` unless it exists; returns the fact's sequence number.
pub(crate) async fn open(store: &dyn AsyncEventStore, account: &str) -> Result<u64, Refusal> {
    check_account(account)?;
    let opened = NewEvent::new(ACCOUNT_OPENED, json!({ "account": account }));
    // Nothing about the account may exist yet.
    match store
        .append_if(vec![opened], &facts_of(account), None)
        .await
    {
        Ok(committed) => Ok(committed.last_sequence_number),
        Err(EventStoreError::ConditionalAppendConflict { .. }) => Err(Refusal::AlreadyOpen),
        Err(error) => Err(error.into()),
    }
}

/// Deposits `amount` into an open account; returns the fact's sequence
/// number. A deposit never makes a balance too low, so it needs no
/// conditional append: accounts are never closed.
pub(crate) async fn deposit(
    store: &dyn AsyncEventStore,
    account: &str,
    amount: i64,
) -> Result<u64, Refusal> {
    check_account(account)?;
    check_amount(amount)?;
    let opening = EventQuery::all().with_filters([EventFilter::for_event_types([ACCOUNT_OPENED])
        .with_payload_predicates([json!({ "account": account })])]);
    if store
        .query_page(&opening, 1)
        .await?
        .event_records
        .is_empty()
    {
        return Err(Refusal::UnknownAccount);
    }
    let deposited = NewEvent::new(
        MONEY_DEPOSITED,
        json!({ "account": account, "amount": amount }),
    );
    Ok(store.append(vec![deposited]).await?.last_sequence_number)
}

/// Withdraws `amount` only if the balance covers it, however many
/// withdrawals race: the append succeeds only if no fact of the account was
/// appended since the balance was read, otherwise it decides again.
pub(crate) async fn withdraw(
    store: &dyn AsyncEventStore,
    account: &str,
    amount: i64,
) -> Result<u64, Refusal> {
    check_account(account)?;
    check_amount(amount)?;
    let withdrawn = NewEvent::new(
        MONEY_WITHDRAWN,
        json!({ "account": account, "amount": amount }),
    );
    loop {
        let state = read_account(store, account).await?;
        if !state.opened {
            return Err(Refusal::UnknownAccount);
        }
        if state.balance < amount {
            return Err(Refusal::InsufficientFunds {
                balance: state.balance,
            });
        }
        match store
            .append_if(
                vec![withdrawn.clone()],
                &facts_of(account),
                state.context_version,
            )
            .await
        {
            Ok(committed) => return Ok(committed.last_sequence_number),
            Err(EventStoreError::ConditionalAppendConflict { .. }) => continue,
            Err(error) => return Err(error.into()),
        }
    }
}
