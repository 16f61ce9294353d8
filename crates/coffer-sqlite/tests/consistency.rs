//! A backup taken while another connection writes is one consistent
//! snapshot: invariants that every committed transaction keeps hold in the
//! restored database, and the restored state is one the source really had.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use coffer::ops::backup::{BackupOptions, backup};
use coffer::ops::restore::{RestoreOptions, restore};
use coffer::progress::Silent;
use coffer::store::{Store, StoreOptions};
use coffer_sqlite::SqliteEngine;
use rusqlite::Connection;

const ACCOUNTS: i64 = 2_000;
const START_BALANCE: i64 = 1_000;

fn setup(path: &std::path::Path, journal_mode: &str) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(&format!(
        "PRAGMA journal_mode = {journal_mode};
         CREATE TABLE accounts(id INTEGER PRIMARY KEY, balance INTEGER NOT NULL, pad BLOB);
         CREATE TABLE ledger(seq INTEGER PRIMARY KEY, src INTEGER, dst INTEGER, amount INTEGER);
         CREATE TABLE meta(k TEXT PRIMARY KEY, v INTEGER) WITHOUT ROWID;
         INSERT INTO meta VALUES('transfers', 0);"
    ))
    .unwrap();
    c.execute_batch("BEGIN").unwrap();
    let mut ins = c
        .prepare("INSERT INTO accounts VALUES(?, ?, randomblob(200))")
        .unwrap();
    for id in 0..ACCOUNTS {
        ins.execute((id, START_BALANCE)).unwrap();
    }
    drop(ins);
    // Bulk so that a scan takes long enough for writes to land during it.
    c.execute_batch(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 60000)
         INSERT INTO ledger(src, dst, amount) SELECT 0, 0, 0 FROM n;
         UPDATE meta SET v = 60000 WHERE k = 'transfers';
         COMMIT;",
    )
    .unwrap();
}

/// Each transfer moves money between two accounts, appends to the ledger and
/// bumps the counter: sum(balance) and count(ledger) = counter are invariant.
fn writer(path: std::path::PathBuf, stop: Arc<AtomicBool>, done: Arc<AtomicU64>) {
    let c = Connection::open(path).unwrap();
    c.busy_timeout(Duration::from_secs(30)).unwrap();
    let mut n: i64 = 0;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let (src, dst, amount) = ((n * 7919) % ACCOUNTS, (n * 104729) % ACCOUNTS, n % 50);
        let tx = c.unchecked_transaction().unwrap();
        tx.execute(
            "UPDATE accounts SET balance = balance - ?1 WHERE id = ?2",
            (amount, src),
        )
        .unwrap();
        tx.execute(
            "UPDATE accounts SET balance = balance + ?1 WHERE id = ?2",
            (amount, dst),
        )
        .unwrap();
        tx.execute(
            "INSERT INTO ledger(src, dst, amount) VALUES(?1, ?2, ?3)",
            (src, dst, amount),
        )
        .unwrap();
        tx.execute("UPDATE meta SET v = v + 1 WHERE k = 'transfers'", [])
            .unwrap();
        tx.commit().unwrap();
        done.fetch_add(1, Ordering::SeqCst);
    }
}

async fn backup_while_writing(journal_mode: &str) {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("bank.db");
    setup(&db, journal_mode);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let w = {
        let (db, stop, done) = (db.clone(), stop.clone(), done.clone());
        std::thread::spawn(move || writer(db, stop, done))
    };
    while done.load(Ordering::SeqCst) < 20 {
        std::thread::sleep(Duration::from_millis(5));
    }
    let before = done.load(Ordering::SeqCst);
    let engine = Arc::new(SqliteEngine);
    let dest = Store::create(
        dir.path().join("bk").to_str().unwrap(),
        &StoreOptions::default(),
    )
    .unwrap();
    // Small parts and one encoder so that the scan is slow and interleaves
    // with the writer's commits.
    let options = BackupOptions {
        encoders: 1,
        write: coffer::datafile::WriteOptions {
            part_size: 64 * 1024,
            ..Default::default()
        },
        ..Default::default()
    };
    let report = backup(
        engine.clone(),
        &coffer_sqlite::address(&db).unwrap(),
        &dest,
        options,
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let after = done.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    w.join().unwrap();
    assert!(
        after > before,
        "the writer made no progress during the backup"
    );

    let out = dir.path().join("restored.db");
    restore(
        engine,
        &dest,
        &coffer_sqlite::address(&out).unwrap(),
        RestoreOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap();
    let c = Connection::open(&out).unwrap();
    let sum: i64 = c
        .query_row("SELECT sum(balance) FROM accounts", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        sum,
        ACCOUNTS * START_BALANCE,
        "balances are not from one moment"
    );
    let (ledger, counter): (i64, i64) = c
        .query_row(
            "SELECT (SELECT count(*) FROM ledger), (SELECT v FROM meta WHERE k = 'transfers')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        ledger, counter,
        "ledger and counter are not from one moment"
    );
    let transfers = counter - 60000;
    assert!(
        transfers as u64 >= before && transfers as u64 <= after,
        "the snapshot ({transfers} transfers) is not a state between {before} and {after}"
    );
    assert_eq!(report.manifest.table("ledger").unwrap().rows, ledger as u64);
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_snapshot_in_wal_mode() {
    backup_while_writing("WAL").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn consistent_snapshot_in_rollback_journal_mode() {
    backup_while_writing("DELETE").await;
}
