//! The HTTP side: routes, the shared state, starting and stopping.
//!
//! | route | does |
//! |---|---|
//! | `POST /accounts/{account}` | opens the account (409 if it exists) |
//! | `POST /accounts/{account}/deposits` `{"amount": n}` | deposits |
//! | `POST /accounts/{account}/withdrawals` `{"amount": n}` | withdraws if the balance allows it (409 otherwise) |
//! | `GET /accounts/{account}/balance` | the balance from the read model, and how far the model has applied the log |
//! | `GET /accounts/{account}/history?after=n&limit=m` | one page of the account's facts, and the `after` of the next page |
//! | `GET /projection` | the read model's progress |

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use factstr::{AsyncEventStore, EventStream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::accounts::{self, Refusal};
use crate::balances::{self, Balances};

/// What every request handler shares.
#[derive(Clone)]
struct AppState {
    store: Arc<dyn AsyncEventStore>,
    balances: Arc<Balances>,
    /// Never sent on: its receiver in [`RunningService`] sees the channel
    /// close once the last copy of the state is gone. Declared last, so it is
    /// dropped after the store handle.
    _in_use: mpsc::Sender<()>,
}

pub(crate) type Error = Box<dyn std::error::Error + Send + Sync>;

/// A running service: its address, the server task and the projection.
pub(crate) struct RunningService {
    address: SocketAddr,
    shutdown: oneshot::Sender<()>,
    server: JoinHandle<std::io::Result<()>>,
    /// Closes when no connection task holds the state any more.
    released: mpsc::Receiver<()>,
    projection: EventStream,
}

/// Starts the projection (after it has caught up with the log) and then
/// serves on `listener`.
pub(crate) async fn start(
    store: Arc<dyn AsyncEventStore>,
    balances: Arc<Balances>,
    listener: TcpListener,
) -> Result<RunningService, Error> {
    let projection = balances::start(store.as_ref(), Arc::clone(&balances)).await?;
    let address = listener.local_addr()?;
    let (in_use, released) = mpsc::channel::<()>(1);
    let router = router(AppState {
        store,
        balances,
        _in_use: in_use,
    });
    let (shutdown, stopped) = oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, router)
            .with_graceful_shutdown(async move {
                let _ = stopped.await;
            })
            .await
    });
    Ok(RunningService {
        address,
        shutdown,
        server,
        released,
        projection,
    })
}

impl RunningService {
    pub(crate) fn address(&self) -> SocketAddr {
        self.address
    }

    /// Stops taking requests, lets the requests in progress finish, then
    /// stops the projection. The store stays open for its other owners; when
    /// this returns, the service holds no handle of it.
    pub(crate) async fn stop(mut self) -> Result<(), Error> {
        let _ = self.shutdown.send(());
        self.server.await??;
        // axum's server ends once every connection task has signalled its
        // end, which each does just before dropping its copy of the router:
        // wait for those copies too, so that the caller's handle is the last.
        let _ = self.released.recv().await;
        self.projection.unsubscribe();
        Ok(())
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/accounts/{account}", post(open_account))
        .route("/accounts/{account}/deposits", post(deposit))
        .route("/accounts/{account}/withdrawals", post(withdraw))
        .route("/accounts/{account}/balance", get(balance))
        .route("/accounts/{account}/history", get(history))
        .route("/projection", get(projection))
        .with_state(state)
}

#[derive(Deserialize)]
struct Amount {
    amount: i64,
}

async fn open_account(State(state): State<AppState>, Path(account): Path<String>) -> Response {
    match accounts::open(state.store.as_ref(), &account).await {
        Ok(sequence_number) => (
            StatusCode::CREATED,
            Json(json!({ "account": account, "sequence_number": sequence_number })),
        )
            .into_response(),
        Err(refusal) => refused(refusal),
    }
}

async fn deposit(
    State(state): State<AppState>,
    Path(account): Path<String>,
    Json(body): Json<Amount>,
) -> Response {
    match accounts::deposit(state.store.as_ref(), &account, body.amount).await {
        Ok(sequence_number) => Json(json!({ "sequence_number": sequence_number })).into_response(),
        Err(refusal) => refused(refusal),
    }
}

async fn withdraw(
    State(state): State<AppState>,
    Path(account): Path<String>,
    Json(body): Json<Amount>,
) -> Response {
    match accounts::withdraw(state.store.as_ref(), &account, body.amount).await {
        Ok(sequence_number) => Json(json!({ "sequence_number": sequence_number })).into_response(),
        Err(refusal) => refused(refusal),
    }
}

async fn balance(State(state): State<AppState>, Path(account): Path<String>) -> Response {
    let progress = state.balances.progress();
    match state.balances.balance(&account) {
        Some(balance) => Json(json!({
            "account": account,
            "balance": balance,
            "applied_through": progress.applied_through,
        }))
        .into_response(),
        None => refused(Refusal::UnknownAccount),
    }
}

#[derive(Deserialize)]
struct PageParameters {
    after: Option<u64>,
    limit: Option<usize>,
}

/// One page of the account's facts: reads no more than `limit` of them,
/// however long the history.
async fn history(
    State(state): State<AppState>,
    Path(account): Path<String>,
    Query(parameters): Query<PageParameters>,
) -> Response {
    let limit = parameters.limit.unwrap_or(50);
    if !(1..=1_000).contains(&limit) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("limit must be from 1 to 1000, got {limit}"),
        );
    }
    let mut query = accounts::facts_of(&account);
    query.min_sequence_number = parameters.after;
    let page = match state.store.query_page(&query, limit).await {
        Ok(page) => page,
        Err(store_error) => return refused(Refusal::Store(store_error)),
    };
    let more = page.event_records.len() == limit
        && page.last_returned_sequence_number < page.current_context_version;
    let events: Vec<Value> = page
        .event_records
        .iter()
        .map(|record| {
            json!({
                "sequence_number": record.sequence_number,
                "occurred_at": record.occurred_at,
                "event_type": record.event_type,
                "amount": record.payload.get("amount"),
            })
        })
        .collect();
    Json(json!({
        "events": events,
        "next_after": if more { page.last_returned_sequence_number } else { None },
        "context_version": page.current_context_version,
    }))
    .into_response()
}

async fn projection(State(state): State<AppState>) -> Response {
    Json(state.balances.progress()).into_response()
}

fn refused(refusal: Refusal) -> Response {
    match refusal {
        Refusal::InvalidAmount(amount) => error(
            StatusCode::BAD_REQUEST,
            format!(
                "amount must be from 1 to {}, got {amount}",
                accounts::MAX_AMOUNT
            ),
        ),
        Refusal::InvalidAccount => error(
            StatusCode::BAD_REQUEST,
            "an account name has 1 to 100 bytes".to_owned(),
        ),
        Refusal::UnknownAccount => error(StatusCode::NOT_FOUND, "no such account".to_owned()),
        Refusal::AlreadyOpen => error(
            StatusCode::CONFLICT,
            "the account is open already".to_owned(),
        ),
        Refusal::InsufficientFunds { balance } => (
            StatusCode::CONFLICT,
            Json(json!({ "error": "insufficient funds", "balance": balance })),
        )
            .into_response(),
        Refusal::Store(store_error @ factstr::EventStoreError::InvalidInput { .. }) => {
            error(StatusCode::BAD_REQUEST, store_error.to_string())
        }
        Refusal::Store(store_error) => {
            tracing::error!(%store_error, "the event store failed");
            error(StatusCode::SERVICE_UNAVAILABLE, store_error.to_string())
        }
    }
}

fn error(status: StatusCode, message: String) -> Response {
    (status, Json(json!({ "error": message }))).into_response()
}
