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
//! The arguments are checked before the database is opened: a mistyped
//! command creates no file.

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
use std::sync::mpsc;

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
  demo                            everything above on a fresh database
  help                            this text (also --help, -h)

The database is bank.db in the current folder unless --db names another file.
Amounts are positive whole numbers.";

/// What the user asked for, checked before any file is touched.
enum Command {
    Open {
        account: String,
        owner: String,
    },
    Deposit {
        account: String,
        amount: i64,
    },
    Withdraw {
        account: String,
        amount: i64,
    },
    Transfer {
        from: String,
        to: String,
        amount: i64,
    },
    Balance {
        account: String,
    },
    History {
        account: String,
    },
    Race {
        account: String,
        count: usize,
        amount: i64,
    },
    Demo,
    Help,
}

/// Reads `[--db PATH] <command> <arguments>`.
fn parse(arguments: &[String]) -> Result<(PathBuf, Command), String> {
    let mut database = PathBuf::from("bank.db");
    let mut words: Vec<&str> = Vec::new();
    let mut rest = arguments.iter().map(String::as_str);
    while let Some(word) = rest.next() {
        match word {
            "--db" => {
                let path = rest.next().ok_or("--db needs a path")?;
                database = PathBuf::from(path);
            }
            "--help" | "-h" => return Ok((database, Command::Help)),
            _ => words.push(word),
        }
    }
    Ok((database, command_of(&words)?))
}

fn command_of(words: &[&str]) -> Result<Command, String> {
    let account = |word: &str| -> Result<String, String> {
        if word.is_empty() {
            Err("an account needs a name".to_owned())
        } else {
            Ok(word.to_owned())
        }
    };
    Ok(match words {
        ["open", name, owner] => Command::Open {
            account: account(name)?,
            owner: (*owner).to_owned(),
        },
        ["deposit", name, amount] => Command::Deposit {
            account: account(name)?,
            amount: amount_of(amount)?,
        },
        ["withdraw", name, amount] => Command::Withdraw {
            account: account(name)?,
            amount: amount_of(amount)?,
        },
        ["transfer", from, to, amount] => Command::Transfer {
            from: account(from)?,
            to: account(to)?,
            amount: amount_of(amount)?,
        },
        ["balance", name] => Command::Balance {
            account: account(name)?,
        },
        ["history", name] => Command::History {
            account: account(name)?,
        },
        ["race", name, count, amount] => Command::Race {
            account: account(name)?,
            count: match count.parse::<usize>() {
                Ok(count) if (1..=1000).contains(&count) => count,
                _ => {
                    return Err(format!(
                        "`{count}` is not a number of withdrawals from 1 to 1000"
                    ));
                }
            },
            amount: amount_of(amount)?,
        },
        ["demo"] => Command::Demo,
        ["help"] => Command::Help,
        [] => return Err("no command given".to_owned()),
        [command, ..] => {
            return Err(match *command {
                "open" | "deposit" | "withdraw" | "transfer" | "balance" | "history" | "race" => {
                    format!("wrong arguments for `{command}`")
                }
                _ => format!("unknown command `{command}`"),
            });
        }
    })
}

fn amount_of(text: &str) -> Result<i64, String> {
    match text.parse::<i64>() {
        Ok(amount) if amount > 0 => Ok(amount),
        _ => Err(format!(
            "`{text}` is not an amount: a whole number from 1 to {}",
            i64::MAX
        )),
    }
}

fn main() {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    let (database, command) = match parse(&arguments) {
        Ok(parsed) => parsed,
        Err(message) => {
            eprintln!("{message}\n\n{USAGE}");
            std::process::exit(2);
        }
    };
    let outcome = match command {
        Command::Help => {
            println!("{USAGE}");
            Ok(())
        }
        Command::Demo => demo(),
        command => SqliteStore::open(&database)
            .map_err(|error| format!("cannot open {}: {error}", database.display()))
            .and_then(|store| run(&(Arc::new(store) as Store), command)),
    };
    if let Err(message) = outcome {
        eprintln!("{message}");
        std::process::exit(1);
    }
}

type Store = Arc<dyn EventStore + Send + Sync>;

fn run(store: &Store, command: Command) -> Result<(), String> {
    let store_ref = store.as_ref();
    match command {
        Command::Open { account, owner } => {
            report(open_account::open_account(store_ref, &account, &owner))
        }
        Command::Deposit { account, amount } => {
            report(deposit::deposit(store_ref, &account, amount))
        }
        Command::Withdraw { account, amount } => {
            report(withdraw::withdraw(store_ref, &account, amount))
        }
        Command::Transfer { from, to, amount } => {
            report(transfer::transfer(store_ref, &from, &to, amount))
        }
        Command::Balance { account } => {
            println!("{account}: {}", balance::balance(store_ref, &account)?);
            Ok(())
        }
        Command::History { account } => {
            for line in account_history::history(store_ref, &account)? {
                println!("{line}");
            }
            Ok(())
        }
        Command::Race {
            account,
            count,
            amount,
        } => race(store, &account, count, amount),
        Command::Demo | Command::Help => Err("not a command on a store".to_owned()),
    }
}

fn report(outcome: Result<String, String>) -> Result<(), String> {
    outcome.map(|message| println!("{message}"))
}

/// Runs `count` withdrawals of `amount` on as many threads at once, printing
/// each outcome as it arrives.
fn race(store: &Store, account: &str, count: usize, amount: i64) -> Result<(), String> {
    let before = balance::balance(store.as_ref(), account)?;
    println!("{count} withdrawals of {amount} at once from {account} (balance {before}):");
    let (outcomes, arrivals) = mpsc::channel();
    let succeeded = std::thread::scope(|scope| {
        for racer in 1..=count {
            let outcomes = outcomes.clone();
            scope.spawn(move || {
                let outcome = withdraw::withdraw(store.as_ref(), account, amount);
                let _ = outcomes.send((racer, outcome));
            });
        }
        drop(outcomes);
        let mut succeeded = 0_usize;
        for (finished, (racer, outcome)) in arrivals.iter().enumerate() {
            let text = match &outcome {
                Ok(message) => message.clone(),
                Err(message) => format!("refused: {message}"),
            };
            println!("  [{}/{count}] withdrawal {racer}: {text}", finished + 1);
            succeeded += usize::from(outcome.is_ok());
        }
        succeeded
    });
    let after = balance::balance(store.as_ref(), account)?;
    println!(
        "{succeeded} succeeded, {} refused; balance now {after}",
        count - succeeded
    );
    let withdrawn = i128::from(before) - i128::from(after);
    let expected = i128::from(amount) * i128::try_from(succeeded).unwrap_or(i128::MAX);
    if after < 0 || withdrawn != expected {
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
        if let Err(message) = command_of(words).and_then(|command| run(&store, command)) {
            println!("refused: {message}");
        }
    }
    drop(store);
    let _ = std::fs::remove_dir_all(&folder);
    Ok(())
}
