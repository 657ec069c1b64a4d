//! The facts of the bank: the only thing slices share.

use factstr::{EventFilter, EventQuery, NewEvent};
use serde_json::json;

pub(crate) const ACCOUNT_OPENED: &str = "account-opened";
pub(crate) const MONEY_DEPOSITED: &str = "money-deposited";
pub(crate) const MONEY_WITHDRAWN: &str = "money-withdrawn";
pub(crate) const MONEY_TRANSFERRED: &str = "money-transferred";

pub(crate) fn account_opened(account: &str, owner: &str) -> NewEvent {
    NewEvent::new(
        ACCOUNT_OPENED,
        json!({ "account": account, "owner": owner }),
    )
}

pub(crate) fn money_deposited(account: &str, amount: i64) -> NewEvent {
    NewEvent::new(
        MONEY_DEPOSITED,
        json!({ "account": account, "amount": amount }),
    )
}

pub(crate) fn money_withdrawn(account: &str, amount: i64) -> NewEvent {
    NewEvent::new(
        MONEY_WITHDRAWN,
        json!({ "account": account, "amount": amount }),
    )
}

pub(crate) fn money_transferred(from: &str, to: &str, amount: i64) -> NewEvent {
    NewEvent::new(
        MONEY_TRANSFERRED,
        json!({ "from": from, "to": to, "amount": amount }),
    )
}

/// The opening of `account`.
pub(crate) fn opening_of(account: &str) -> EventFilter {
    EventFilter::for_event_types([ACCOUNT_OPENED])
        .with_payload_predicates([json!({ "account": account })])
}

/// Every fact that moves money in or out of `account`.
pub(crate) fn money_of(account: &str) -> [EventFilter; 2] {
    [
        EventFilter::for_event_types([MONEY_DEPOSITED, MONEY_WITHDRAWN])
            .with_payload_predicates([json!({ "account": account })]),
        EventFilter::for_event_types([MONEY_TRANSFERRED])
            .with_payload_predicates([json!({ "from": account }), json!({ "to": account })]),
    ]
}

/// A query of the given filters.
pub(crate) fn query(filters: impl IntoIterator<Item = EventFilter>) -> EventQuery {
    EventQuery::all().with_filters(filters)
}
