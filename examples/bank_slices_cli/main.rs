//! A small bank built as feature slices on one SQLite log.
//!
//! Every slice owns its context (the query of the facts its decisions or its
//! read model need) and its logic; slices share nothing but the facts. A
//! command reads its context, decides, and appends with `append_if`, so two
//! withdrawals decided on the same balance can never both commit: no
//! overdraft, whatever runs at the same time.
//!
//! ```text
//! cargo run --example bank_slices_cli -- open a1 Ada
//! cargo run --example bank_slices_cli -- deposit a1 100
//! cargo run --example bank_slices_cli -- withdraw a1 30
//! cargo run --example bank_slices_cli -- open a2 Bob
//! cargo run --example bank_slices_cli -- transfer a1 a2 50
//! cargo run --example bank_slices_cli -- balance a1
//! cargo run --example bank_slices_cli -- history a1
//! cargo run --example bank_slices_cli -- race a1 20 10   # 20 withdrawals of 10 at once
//! cargo run --example bank_slices_cli -- demo             # all of it on a fresh database
//! ```
//!
//! The database is `bank.db` in the current folder (`--db <path>` to change).

#![allow(clippy::print_stdout, clippy::print_stderr)] // a command-line program

mod account_history;
mod balance;
mod deposit;
mod facts;
mod open_account;
mod transfer;
mod withdraw;

use std::path::PathBuf;
use std::sync::Arc;

use factstr::EventStore;
use factstr_sqlite::SqliteStore;

const USAGE: &str = "usage: bank_slices_cli [--db PATH] <command>
  open <account> <owner>          open an account
  deposit <account> <amount>      deposit money
  withdraw <account> <amount>     withdraw money, never below zero
  transfer <from> <to> <amount>   move money between accounts, atomically
  balance <account>               the account's balance
  history <account>               the account's facts in order
  race <account> <n> <amount>     n withdrawals at the same time; none overdraws
  demo                            everything above on a fresh database";

fn main() {
    let mut arguments: Vec<String> = std::env::args().skip(1).collect();
    let mut database = PathBuf::from("bank.db");
    if arguments.first().map(String::as_str) == Some("--db") && arguments.len() >= 2 {
        database = PathBuf::from(arguments.remove(1));
        arguments.remove(0);
    }
    let words: Vec<&str> = arguments.iter().map(String::as_str).collect();
    let outcome = if words == ["demo"] {
        demo()
    } else {
        SqliteStore::open(&database)
            .map_err(|error| error.to_string())
            .and_then(|store| run(Arc::new(store), &words))
    };
    if let Err(message) = outcome {
        eprintln!("{message}");
        std::process::exit(1);
    }
}

type Store = Arc<dyn EventStore + Send + Sync>;

fn run(store: Store, words: &[&str]) -> Result<(), String> {
    match words {
        ["open", account, owner] => {
            report(open_account::open_account(store.as_ref(), account, owner))
        }
        ["deposit", account, amount] => report(deposit::deposit(
            store.as_ref(),
            account,
            amount_of(amount)?,
        )),
        ["withdraw", account, amount] => report(withdraw::withdraw(
            store.as_ref(),
            account,
            amount_of(amount)?,
        )),
        ["transfer", from, to, amount] => report(transfer::transfer(
            store.as_ref(),
            from,
            to,
            amount_of(amount)?,
        )),
        ["balance", account] => {
            println!("{account}: {}", balance::balance(store.as_ref(), account)?);
            Ok(())
        }
        ["history", account] => {
            for line in account_history::history(store.as_ref(), account)? {
                println!("{line}");
            }
            Ok(())
        }
        ["race", account, count, amount] => race(
            &store,
            account,
            count.parse().map_err(|_| "n must be a number")?,
            amount_of(amount)?,
        ),
        _ => Err(USAGE.to_owned()),
    }
}

fn amount_of(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(amount) if amount > 0 => Ok(amount),
        _ => Err(format!("`{text}` is not a positive whole amount")),
    }
}

fn report(outcome: Result<String, String>) -> Result<(), String> {
    outcome.map(|message| println!("{message}"))
}

/// Runs `count` withdrawals of `amount` on as many threads at once.
fn race(store: &Store, account: &str, count: usize, amount: i64) -> Result<(), String> {
    let before = balance::balance(store.as_ref(), account)?;
    let outcomes: Vec<Result<String, String>> = std::thread::scope(|scope| {
        let racers: Vec<_> = (0..count)
            .map(|_| scope.spawn(|| withdraw::withdraw(store.as_ref(), account, amount)))
            .collect();
        racers
            .into_iter()
            .map(|racer| {
                racer
                    .join()
                    .unwrap_or_else(|_| Err("a withdrawal panicked".to_owned()))
            })
            .collect()
    });
    let succeeded = outcomes.iter().filter(|outcome| outcome.is_ok()).count();
    let after = balance::balance(store.as_ref(), account)?;
    println!(
        "{count} withdrawals of {amount} at once from {account} (balance {before}): \
         {succeeded} succeeded, {} refused; balance now {after}",
        count - succeeded
    );
    if after < 0 || before - after != succeeded as i64 * amount {
        return Err("overdraft or lost update: this must never happen".to_owned());
    }
    Ok(())
}

fn demo() -> Result<(), String> {
    let folder = std::env::temp_dir().join(format!("factstr-bank-demo-{}", std::process::id()));
    let store: Store =
        Arc::new(SqliteStore::open(folder.join("bank.db")).map_err(|error| error.to_string())?);
    let script: [&[&str]; 10] = [
        &["open", "a1", "Ada"],
        &["open", "a1", "Ada again"],
        &["deposit", "a1", "100"],
        &["withdraw", "a1", "30"],
        &["withdraw", "a1", "500"],
        &["open", "a2", "Bob"],
        &["transfer", "a1", "a2", "50"],
        &["balance", "a2"],
        &["history", "a1"],
        &["race", "a1", "12", "5"],
    ];
    for words in script {
        println!("$ bank {}", words.join(" "));
        if let Err(message) = run(Arc::clone(&store), words) {
            println!("refused: {message}");
        }
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&folder);
    Ok(())
}
