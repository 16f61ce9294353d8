//! The engine conformance suite: what every [`Engine`](coffer::engine::Engine)
//! must do, checked through the library's operations.
//!
//! Each check is a plain `async fn` over an [`EngineFixture`]; it panics
//! with a message naming the check, the engine and the first difference on
//! failure. [`run_all`] runs every check. The checks use local stores, and
//! the in-process S3 server ([`S3Server`]) for the export round trip and
//! the change-capture check. Run the suite on a multi-threaded tokio
//! runtime (`#[tokio::test(flavor = "multi_thread")]`).
//!
//! | check | what must hold |
//! |---|---|
//! | [`description_reads_back`] | a database made from a description holds its values (the fixture is honest) |
//! | [`backup_restore_round_trip`] | backup → restore gives the same image, for a neutral database and the engine's own nasty one, into a new target and over an existing one |
//! | [`export_import_round_trip`] | export → import gives the same tables (local and S3) |
//! | [`snapshot_under_concurrent_writer`] | a backup taken while a writer commits restores to the image of one state the database had, never a mix |
//! | [`restore_atomic_under_cancel`] | a restore cancelled at any point leaves no target (or the replaced one unchanged), or finishes whole |
//! | [`import_atomic_under_cancel`] | likewise for imports into a new and an existing database |
//! | [`import_modes`] | create refuses an existing table and writes nothing; append adds the rows; replace swaps the table and leaves the rest |
//! | [`capture_loses_no_write`] | with a writer running through backups, the last incremental restores every write |
//! | [`failed_backup_trims_nothing`] | a cancelled collection backup leaves the change log whole |
//! | [`incremental_refused_after_schema_change`] | an incremental is refused after a schema change; `Auto` takes a full backup |
//!
//! The checks of change capture pass (doing nothing but say so) for an
//! engine without [`ChangeCapture`](coffer::engine::ChangeCapture).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use coffer::ErrorKind;
use coffer::engine::{Address, ImportMode};
use coffer::manifest::ArchiveKind;
use coffer::ops::backup::{BackupOptions, backup};
use coffer::ops::collection::{
    self, BackupMode, CollectionBackupOptions, CollectionRestoreOptions, CreateOptions,
    RestorePoint,
};
use coffer::ops::export::{ExportOptions, export};
use coffer::ops::import::{ImportOptions, import};
use coffer::ops::restore::{RestoreOptions, restore};
use coffer::progress::{Cancel, Progress, Run, Silent};
use coffer::store::{Store, StoreOptions};

use crate::S3Server;
use crate::fixture::{ColumnType, Description, EngineFixture, SchemaChange, TableDesc};
use crate::image::{Image, Value, diff, diff_tables};
use crate::nasty::pseudo_random_bytes;

/// Progress that sets a [`Cancel`] at its `at`-th callback (counting
/// every `begin`, `advance`, `note` and `end`), and counts callbacks.
pub struct CancelAt {
    cancel: Cancel,
    at: u64,
    calls: AtomicU64,
}

impl CancelAt {
    /// Cancel `cancel` at callback `at` (0 is the first); `u64::MAX` never.
    pub fn new(cancel: Cancel, at: u64) -> Arc<CancelAt> {
        Arc::new(CancelAt {
            cancel,
            at,
            calls: AtomicU64::new(0),
        })
    }

    /// Callbacks so far.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    fn tick(&self) {
        if self.calls.fetch_add(1, Ordering::SeqCst) == self.at {
            self.cancel.cancel();
        }
    }
}

impl Progress for CancelAt {
    fn wants_totals(&self) -> bool {
        true
    }
    fn begin(&self, _: &str, _: Option<u64>, _: Option<u64>) {
        self.tick()
    }
    fn advance(&self, _: u64, _: u64) {
        self.tick()
    }
    fn note(&self, _: &str) {
        self.tick()
    }
    fn end(&self) {
        self.tick()
    }
}

/// Cancel points spread over `total` callbacks: the first few, fractions
/// of the way, the last few.
fn cancel_points(total: u64) -> Vec<u64> {
    let mut p: Vec<u64> = [0, 1, 2, total / 4, total / 2, 3 * total / 4]
        .into_iter()
        .chain([total.saturating_sub(2), total.saturating_sub(1)])
        .filter(|&p| p < total)
        .collect();
    p.sort();
    p.dedup();
    p
}

fn image_of(fx: &dyn EngineFixture, db: &Address, check: &str) -> Image {
    fx.image(db)
        .unwrap_or_else(|e| panic!("{check}: could not read {db}: {e}"))
}

fn digest_of(fx: &dyn EngineFixture, db: &Address, check: &str) -> String {
    image_of(fx, db, check)
        .digest()
        .unwrap_or_else(|e| panic!("{check}: could not digest {db}: {e}"))
}

#[track_caller]
fn same(check: &str, what: &str, result: Result<(), String>) {
    if let Err(msg) = result {
        panic!("{check}: {what}: {msg}");
    }
}

fn local_store(dir: &std::path::Path, name: &str) -> Store {
    Store::create(
        dir.join(name).to_str().expect("a UTF-8 path"),
        &StoreOptions::default(),
    )
    .expect("a local store")
}

/// A database in neutral terms with the values every engine must keep
/// exactly: integer extremes, signed zeros, infinities and subnormal
/// floats, text in many scripts with quotes, controls and combining marks,
/// empty text beside NULL, empty and large blobs, all 256 byte values, a
/// composite text key, a table without a key, an empty table, and names
/// that need quoting.
pub fn nasty_description() -> Description {
    use ColumnType::*;
    let t = Value::text;
    let texts = [
        "",
        " ",
        "plain",
        "it's \"quoted\" \\ back\\slash",
        "line\nbreak\r\ntab\t",
        "Ünïcødé → 表 🦀 שלום \u{202e}rtl\u{202c}",
        "e\u{301} (combining) and \u{fffd}",
        "NULL",
    ];
    let reals = [
        0.0,
        -0.0,
        f64::INFINITY,
        f64::NEG_INFINITY,
        f64::MIN_POSITIVE,
        f64::MIN_POSITIVE / 1024.0,
        f64::MAX,
        f64::MIN,
        1.0 / 3.0,
        1e-300,
    ];
    let ints = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
    let mut values = Vec::new();
    let n = 40;
    for i in 0..n {
        let blob = match i % 5 {
            0 => Value::Blob(Vec::new()),
            1 => Value::Blob((0..=255u8).collect()),
            2 => Value::Blob(vec![0; 17]),
            3 => Value::Null,
            _ => Value::Blob(pseudo_random_bytes(100 + i, i as u64)),
        };
        let text = if i % 9 == 8 {
            Value::Null
        } else {
            t(texts[i % texts.len()])
        };
        values.push(vec![
            Value::Integer(i as i64 * 3 - 50),
            Value::Integer(ints[i % ints.len()]),
            Value::real(reals[i % reals.len()]),
            text,
            blob,
        ]);
    }
    // Large values: a 1 MiB text and a 2 MiB blob.
    let big_text: String = "The quick brown fox 🦀 表\n".repeat(1 << 15);
    values.push(vec![
        Value::Integer(1 << 40),
        Value::Integer(7),
        Value::real(2.5),
        Value::text(&big_text),
        Value::Blob(pseudo_random_bytes(2 << 20, 99)),
    ]);
    let values_table = TableDesc::new(
        "values",
        &[
            ("id", Integer, false),
            ("int", Integer, false),
            ("real", Real, false),
            ("text", Text, true),
            ("blob", Blob, true),
        ],
        &["id"],
    )
    .with_rows(values);

    let pairs = TableDesc::new(
        "pairs \"quoted\" 表",
        &[
            ("group key", Text, false),
            ("n", Integer, false),
            ("weight", Real, true),
        ],
        &["group key", "n"],
    )
    .with_rows(
        (0..60)
            .map(|i| {
                vec![
                    t(["a", "B", "", "é", "🦀"][i % 5]),
                    Value::Integer((i / 5) as i64),
                    if i % 4 == 0 {
                        Value::Null
                    } else {
                        Value::real(i as f64 / 7.0)
                    },
                ]
            })
            .collect(),
    );
    let log = TableDesc::new("log", &[("msg", Text, true), ("n", Integer, true)], &[]).with_rows(
        (0..50)
            .map(|i| {
                vec![
                    if i % 10 == 0 {
                        t("")
                    } else {
                        t(&format!("event {i}"))
                    },
                    if i % 7 == 0 {
                        Value::Null
                    } else {
                        Value::Integer(i)
                    },
                ]
            })
            .collect(),
    );
    let empty = TableDesc::new("empty", &[("a", Integer, true), ("b", Blob, true)], &[]);
    Description {
        tables: vec![values_table, pairs, log, empty],
    }
}

/// Tables for the change-capture checks: an integer key, a composite
/// text key, no key.
fn capture_description(keyless: bool) -> Description {
    use ColumnType::*;
    let items = TableDesc::new(
        "items",
        &[
            ("id", Integer, false),
            ("name", Text, false),
            ("qty", Integer, true),
            ("data", Blob, true),
        ],
        &["id"],
    )
    .with_rows(
        (1..=300)
            .map(|i| {
                vec![
                    Value::Integer(i),
                    Value::text(&format!("item {i}")),
                    Value::Integer(i * 3),
                    if i % 7 == 0 {
                        Value::Null
                    } else {
                        Value::Blob(pseudo_random_bytes(20, i as u64))
                    },
                ]
            })
            .collect(),
    );
    let tags = TableDesc::new(
        "tags",
        &[
            ("tag", Text, false),
            ("item", Integer, false),
            ("weight", Real, true),
        ],
        &["tag", "item"],
    )
    .with_rows(
        (0..200)
            .map(|i| {
                vec![
                    Value::text(&format!("k{}", i % 40)),
                    Value::Integer(i / 40),
                    Value::real(i as f64 / 3.0),
                ]
            })
            .collect(),
    );
    // Without a key where the engine captures such tables (SQLite's rowid).
    let events = if keyless {
        TableDesc::new(
            "events",
            &[("kind", Text, true), ("payload", Blob, true)],
            &[],
        )
        .with_rows(
            (0..100)
                .map(|i| vec![Value::text("made"), Value::Blob(pseudo_random_bytes(8, i))])
                .collect(),
        )
    } else {
        TableDesc::new(
            "events",
            &[
                ("id", Integer, false),
                ("kind", Text, true),
                ("payload", Blob, true),
            ],
            &["id"],
        )
        .with_rows(
            (0..100)
                .map(|i| {
                    vec![
                        Value::Integer(i as i64 + 1),
                        Value::text("made"),
                        Value::Blob(pseudo_random_bytes(8, i)),
                    ]
                })
                .collect(),
        )
    };
    Description {
        tables: vec![items, tags, events],
    }
}

/// A database made from [`nasty_description`] holds exactly the described
/// rows (as [`EngineFixture::stored_as`] says the engine keeps them), so
/// that the round trips really carry the nasty values.
pub async fn description_reads_back(fx: &dyn EngineFixture) {
    let check = "description_reads_back";
    let description = nasty_description();
    let db = fx.create("described", &description);
    let image = image_of(fx, &db, check);
    for t in &description.tables {
        let mut wanted: Vec<Vec<Value>> = t
            .rows
            .iter()
            .map(|r| {
                r.iter()
                    .zip(&t.columns)
                    .map(|(v, c)| fx.stored_as(c.ty, v))
                    .collect()
            })
            .collect();
        wanted.sort();
        let got = row_multiset(&image, &t.name, check);
        assert_eq!(
            got.len(),
            wanted.len(),
            "{check}: table {}: row count",
            t.name
        );
        for (g, w) in got.iter().zip(&wanted) {
            assert_eq!(
                g, w,
                "{check}: table {}: a row reads back otherwise",
                t.name
            );
        }
    }
}

/// Back up `db` into the empty store `dest`, panicking on failure.
async fn backup_to(fx: &dyn EngineFixture, db: &Address, dest: &Store, check: &str) {
    backup(
        fx.engine(),
        db,
        dest,
        BackupOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: backup of {db}: {e}"));
}

async fn restore_into(
    fx: &dyn EngineFixture,
    src: &Store,
    target: &Address,
    replace: bool,
    check: &str,
) {
    restore(
        fx.engine(),
        src,
        target,
        RestoreOptions {
            replace,
            ..Default::default()
        },
        Arc::new(Silent),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: restore into {target}: {e}"));
}

/// Backup → restore gives the same image: for a database made from
/// [`nasty_description`] and for the engine's own nasty database, into a
/// new target and over an existing database (`replace`).
pub async fn backup_restore_round_trip(fx: &dyn EngineFixture) {
    let check = "backup_restore_round_trip";
    let dir = tempfile::tempdir().unwrap();
    let mut sources = vec![fx.create("neutral", &nasty_description())];
    sources.extend(fx.create_nasty("nasty"));
    for (i, src) in sources.iter().enumerate() {
        let store = local_store(dir.path(), &format!("backup-{i}"));
        backup_to(fx, src, &store, check).await;
        let target = fx.fresh("restored");
        restore_into(fx, &store, &target, false, check).await;
        same(
            check,
            "a restore into a new database",
            diff(&image_of(fx, src, check), &image_of(fx, &target, check)),
        );
        // Over an existing, different database.
        let existing = fx.create("existing", &capture_description(fx.captures_keyless()));
        restore_into(fx, &store, &existing, true, check).await;
        same(
            check,
            "a restore over an existing database",
            diff(&image_of(fx, src, check), &image_of(fx, &existing, check)),
        );
    }
}

/// Export → import gives the same tables, through a local store and
/// through S3; an export of chosen tables imports just those.
pub async fn export_import_round_trip(fx: &dyn EngineFixture) {
    let check = "export_import_round_trip";
    let dir = tempfile::tempdir().unwrap();
    let description = nasty_description();
    let names = description.names();
    let src = fx.create("source", &description);
    let s3 = S3Server::start();
    s3.create_bucket("exports");
    let stores = [
        local_store(dir.path(), "export"),
        Store::create(&s3.url("exports", "all"), &s3.store_options()).unwrap(),
    ];
    for store in &stores {
        export(
            fx.engine(),
            &src,
            store,
            ExportOptions::default(),
            Arc::new(Silent),
        )
        .await
        .unwrap_or_else(|e| panic!("{check}: export to {}: {e}", store.url()));
        let target = fx.fresh("imported");
        import(
            fx.engine(),
            store,
            &target,
            ImportOptions::default(),
            Arc::new(Silent),
        )
        .await
        .unwrap_or_else(|e| panic!("{check}: import from {}: {e}", store.url()));
        let (a, b) = (image_of(fx, &src, check), image_of(fx, &target, check));
        same(
            check,
            &format!("an import from {}", store.url()),
            diff_tables(&a, &b, &names),
        );
        let extra: Vec<&String> = b
            .tables
            .keys()
            .filter(|n| !names.contains(&n.as_str()))
            .collect();
        assert!(
            extra.is_empty(),
            "{check}: the import made tables that were not exported: {extra:?}"
        );
    }
    // Chosen tables only.
    let store = local_store(dir.path(), "chosen");
    export(
        fx.engine(),
        &src,
        &store,
        ExportOptions {
            tables: Some(vec!["log".to_string()]),
            ..Default::default()
        },
        Arc::new(Silent),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: export of one table: {e}"));
    let target = fx.fresh("chosen");
    import(
        fx.engine(),
        &store,
        &target,
        ImportOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: import of one table: {e}"));
    let b = image_of(fx, &target, check);
    same(
        check,
        "an import of one table",
        diff_tables(&image_of(fx, &src, check), &b, &["log"]),
    );
    assert_eq!(
        b.tables.keys().collect::<Vec<_>>(),
        ["log"],
        "{check}: an export of one table imported others"
    );
}

/// A writer committing in a loop on its own thread, counting its commits.
struct Background {
    stop: Arc<AtomicBool>,
    steps: Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<Result<(), String>>>,
}

impl Background {
    fn start(mut writer: Box<dyn crate::fixture::Writer>, pause: Duration) -> Background {
        let stop = Arc::new(AtomicBool::new(false));
        let steps = Arc::new(AtomicU64::new(0));
        let thread = {
            let (stop, steps) = (stop.clone(), steps.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    writer.step()?;
                    steps.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(pause);
                }
                Ok(())
            })
        };
        Background {
            stop,
            steps,
            thread: Some(thread),
        }
    }

    fn steps(&self) -> u64 {
        self.steps.load(Ordering::SeqCst)
    }

    async fn wait_for(&self, n: u64) {
        while self.steps() < n {
            if self.thread.as_ref().is_some_and(|t| t.is_finished()) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }

    fn finish(mut self, check: &str) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        match self.thread.take().unwrap().join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("{check}: the writer failed: {e}"),
            Err(_) => panic!("{check}: the writer panicked"),
        }
        self.steps()
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// One consistent snapshot under a concurrent writer: while a writer
/// commits transactions that change two tables together, a backup scans
/// them and a large table between them; the restored database equals the
/// database after exactly one of the writer's transactions (found by
/// replaying the writer's seeded transactions on a copy), never a mix.
pub async fn snapshot_under_concurrent_writer(fx: &dyn EngineFixture) {
    use ColumnType::*;
    let check = "snapshot_under_concurrent_writer";
    let hot = |name: &str| {
        TableDesc::new(
            name,
            &[
                ("id", Integer, false),
                ("n", Integer, true),
                ("note", Text, true),
            ],
            &["id"],
        )
        .with_rows(
            (1..=200)
                .map(|i| vec![Value::Integer(i), Value::Integer(i), Value::text("start")])
                .collect(),
        )
    };
    let pad = TableDesc::new(
        "m_pad",
        &[("id", Integer, false), ("body", Blob, false)],
        &["id"],
    )
    .with_rows(
        (1..=40_000)
            .map(|i| {
                vec![
                    Value::Integer(i),
                    Value::Blob(pseudo_random_bytes(300, i as u64)),
                ]
            })
            .collect(),
    );
    let description = Description {
        tables: vec![hot("a_hot"), pad, hot("z_hot")],
    };
    let hot_tables = ["a_hot", "z_hot"];
    let seed = fastrand::u64(..);
    let dir = tempfile::tempdir().unwrap();
    // A backup too quick for the writer to commit during it proves
    // nothing: try again on a fresh database (the replay starts from the
    // description).
    let mut attempt = 0;
    let (store, before, after) = loop {
        attempt += 1;
        let src = fx.create("source", &description);
        let writer = Background::start(
            fx.writer(&src, &description, &hot_tables, seed),
            Duration::from_micros(300),
        );
        writer.wait_for(5).await;
        let before = writer.steps();
        let store = local_store(dir.path(), &format!("backup-{attempt}"));
        let started = jiff::Timestamp::now();
        // Small parts and one encoder: the scan is slow and interleaves
        // with the writer's commits.
        let report = backup(
            fx.engine(),
            &src,
            &store,
            BackupOptions {
                encoders: 1,
                write: coffer::datafile::WriteOptions {
                    part_size: 64 * 1024,
                    ..Default::default()
                },
                ..Default::default()
            },
            Arc::new(Silent),
        )
        .await
        .unwrap_or_else(|e| panic!("{check}: backup under a writer: {e}"));
        let after = writer.steps();
        let ended = jiff::Timestamp::now();
        writer.finish(check);
        // The backup point is the snapshot's moment: within the backup,
        // never the clock after it (the manifest's creation time).
        let point: jiff::Timestamp = report.manifest.backup_point.parse().unwrap_or_else(|e| {
            panic!(
                "{check}: backup point {:?}: {e}",
                report.manifest.backup_point
            )
        });
        assert!(
            started <= point && point <= ended,
            "{check}: the backup point {point} is not within the backup ({started} to {ended})"
        );
        if after > before + 2 {
            break (store, before, after);
        }
        assert!(
            attempt < 5,
            "{check}: in {attempt} tries the writer never committed more than twice during a backup (seed {seed})"
        );
    };
    let restored = fx.fresh("restored");
    restore_into(fx, &store, &restored, false, check).await;
    let got = image_of(fx, &restored, check);
    let wanted = got
        .only_tables(&hot_tables)
        .digest()
        .unwrap_or_else(|e| panic!("{check}: {e}"));

    // Replay the writer on a copy made from the same description.
    let copy = fx.create("replay", &description);
    let mut replay = fx.writer(&copy, &description, &hot_tables, seed);
    let mut state = 0u64;
    while state < before {
        replay
            .step()
            .unwrap_or_else(|e| panic!("{check}: replay: {e}"));
        state += 1;
    }
    let found = loop {
        let image = image_of(fx, &copy, check);
        if image.only_tables(&hot_tables).digest().unwrap() == wanted {
            break Some(image);
        }
        if state > after {
            break None;
        }
        replay
            .step()
            .unwrap_or_else(|e| panic!("{check}: replay: {e}"));
        state += 1;
    };
    let Some(at_snapshot) = found else {
        panic!(
            "{check}: the restored tables {hot_tables:?} are no state the database had between the writer's commits {before} and {} (seed {seed}): the backup mixed moments",
            after + 1
        );
    };
    eprintln!(
        "{check}: {} commits during the backup; the restore is the state after commit {state} (seed {seed})",
        after - before
    );
    same(
        check,
        &format!("the restored database against the database after commit {state} (seed {seed})"),
        diff(&at_snapshot, &got),
    );
}

fn expect_interrupted_or_whole<T>(check: &str, what: &str, result: coffer::Result<T>) -> bool {
    match result {
        Ok(_) => false,
        Err(e) if e.kind() == ErrorKind::Interrupted => true,
        Err(e) => panic!("{check}: {what}: failed other than by the cancel: {e}"),
    }
}

/// A restore cancelled at any of several points leaves no database at a
/// new target and nothing beside it, and leaves an existing database it
/// would replace as it was; one that finishes despite the cancel is whole.
pub async fn restore_atomic_under_cancel(fx: &dyn EngineFixture) {
    let check = "restore_atomic_under_cancel";
    let dir = tempfile::tempdir().unwrap();
    let src = fx.create("source", &nasty_description());
    let store = local_store(dir.path(), "backup");
    backup_to(fx, &src, &store, check).await;
    let source = image_of(fx, &src, check);

    let counter = CancelAt::new(Cancel::new(), u64::MAX);
    let target = fx.fresh("counted");
    restore(
        fx.engine(),
        &store,
        &target,
        RestoreOptions::default(),
        counter.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: restore: {e}"));
    let total = counter.calls();
    let mut interrupted = 0;
    for at in cancel_points(total) {
        for replace in [false, true] {
            let target = if replace {
                fx.create("existing", &capture_description(fx.captures_keyless()))
            } else {
                fx.fresh("cancelled")
            };
            let before = replace.then(|| digest_of(fx, &target, check));
            let cancel = Cancel::new();
            let result = restore(
                fx.engine(),
                &store,
                &target,
                RestoreOptions {
                    replace,
                    ..Default::default()
                },
                Run::new(CancelAt::new(cancel.clone(), at), cancel),
            )
            .await;
            let what = format!(
                "a restore (replace: {replace}) cancelled at progress call {at} of {total}"
            );
            if expect_interrupted_or_whole(check, &what, result) {
                interrupted += 1;
                match &before {
                    None => assert!(
                        !fx.exists(&target),
                        "{check}: {what} left a database at {target}"
                    ),
                    Some(d) => assert_eq!(
                        &digest_of(fx, &target, check),
                        d,
                        "{check}: {what} changed the database it would have replaced"
                    ),
                }
            } else {
                same(check, &what, diff(&source, &image_of(fx, &target, check)));
            }
            let left = fx.leftovers(&target);
            assert!(
                left.is_empty(),
                "{check}: {what} left {left:?} beside {target}"
            );
        }
    }
    eprintln!("{check}: {interrupted} of the cancelled restores stopped ({total} progress calls)");
    assert!(
        interrupted > 0,
        "{check}: no cancel point stopped a restore ({total} progress calls)"
    );
}

/// An import cancelled at any of several points leaves no database at a
/// new target and an existing database as it was (append and replace);
/// one that finishes despite the cancel is whole.
pub async fn import_atomic_under_cancel(fx: &dyn EngineFixture) {
    let check = "import_atomic_under_cancel";
    let dir = tempfile::tempdir().unwrap();
    let description = capture_description(fx.captures_keyless());
    let names = description.names();
    let src = fx.create("source", &description);
    let store = local_store(dir.path(), "export");
    export(
        fx.engine(),
        &src,
        &store,
        ExportOptions::default(),
        Arc::new(Silent),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: export: {e}"));
    let source = image_of(fx, &src, check);

    let counter = CancelAt::new(Cancel::new(), u64::MAX);
    let target = fx.fresh("counted");
    import(
        fx.engine(),
        &store,
        &target,
        ImportOptions::default(),
        counter.clone(),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: import: {e}"));
    let total = counter.calls();
    let mut interrupted = 0;
    let other = nasty_description();
    for at in cancel_points(total) {
        for mode in [ImportMode::Create, ImportMode::Append, ImportMode::Replace] {
            // Create goes into a new database; append and replace into an
            // existing one (append: other tables beside; replace: the same
            // tables, other rows).
            let target = match mode {
                ImportMode::Create => fx.fresh("cancelled"),
                ImportMode::Append => fx.create("existing", &other),
                ImportMode::Replace => fx.create("existing", &nasty_rows_of(&description)),
            };
            let before = (mode != ImportMode::Create).then(|| digest_of(fx, &target, check));
            let cancel = Cancel::new();
            let result = import(
                fx.engine(),
                &store,
                &target,
                ImportOptions {
                    mode,
                    ..Default::default()
                },
                Run::new(CancelAt::new(cancel.clone(), at), cancel),
            )
            .await;
            let what = format!("an import ({mode:?}) cancelled at progress call {at} of {total}");
            if expect_interrupted_or_whole(check, &what, result) {
                interrupted += 1;
                match &before {
                    None => assert!(
                        !fx.exists(&target),
                        "{check}: {what} left a database at {target}"
                    ),
                    Some(d) => assert_eq!(
                        &digest_of(fx, &target, check),
                        d,
                        "{check}: {what} changed the database"
                    ),
                }
            } else {
                same(
                    check,
                    &what,
                    diff_tables(&source, &image_of(fx, &target, check), &names),
                );
            }
            let left = fx.leftovers(&target);
            assert!(
                left.is_empty(),
                "{check}: {what} left {left:?} beside {target}"
            );
        }
    }
    eprintln!("{check}: {interrupted} of the cancelled imports stopped ({total} progress calls)");
    assert!(
        interrupted > 0,
        "{check}: no cancel point stopped an import ({total} progress calls)"
    );
}

/// The same tables as `description`, with other rows (for a target whose
/// tables an import replaces).
fn nasty_rows_of(description: &Description) -> Description {
    let mut rng = fastrand::Rng::with_seed(7);
    Description {
        tables: description
            .tables
            .iter()
            .map(|t| {
                let keys = t.key_positions();
                let rows = (0..10)
                    .map(|i| {
                        t.columns
                            .iter()
                            .enumerate()
                            .map(|(c, col)| match (keys.first() == Some(&c), col.ty) {
                                (true, ColumnType::Integer) => Value::Integer(10_000 + i),
                                (_, ColumnType::Text) if keys.contains(&c) => {
                                    Value::text(&format!("other {i}"))
                                }
                                _ if keys.contains(&c) => Value::Integer(i),
                                _ => crate::fixture::random_value(&mut rng, col.ty, col.nullable),
                            })
                            .collect()
                    })
                    .collect();
                t.clone().with_rows(rows)
            })
            .collect(),
    }
}

/// The rows of table `name` without an engine's hidden key column, sorted:
/// what an append must add up to, whatever keys the engine assigns.
fn row_multiset(image: &Image, name: &str, check: &str) -> Vec<Vec<Value>> {
    let table = &image
        .tables
        .get(name)
        .unwrap_or_else(|| panic!("{check}: {} has no table {name}", image.name));
    let mut rows: Vec<Vec<Value>> = image
        .table_rows(name)
        .unwrap_or_else(|e| panic!("{check}: {e}"))
        .into_iter()
        .map(|mut r| {
            if let Some(h) = table.hidden_key {
                r.remove(h);
            }
            r
        })
        .collect();
    rows.sort();
    rows
}

/// The import modes: `Create` refuses a table that exists, naming it, and
/// writes nothing; `Append` adds the archive's rows to the existing ones;
/// `Replace` swaps the tables for the archive's and leaves other tables as
/// they were.
pub async fn import_modes(fx: &dyn EngineFixture) {
    let check = "import_modes";
    let dir = tempfile::tempdir().unwrap();
    let description = capture_description(fx.captures_keyless());
    let src = fx.create("source", &description);
    let store = local_store(dir.path(), "export");
    // Only the table without a key: appending keyed rows to a table that
    // has the same keys conflicts.
    let appended = description.table("events").clone();
    export(
        fx.engine(),
        &src,
        &store,
        ExportOptions {
            tables: Some(vec!["events".into(), "items".into()]),
            ..Default::default()
        },
        Arc::new(Silent),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: export: {e}"));
    let source = image_of(fx, &src, check);

    // The target: the same tables with other rows (disjoint keys), and a
    // table of its own.
    let mut target_description = nasty_rows_of(&Description {
        tables: vec![description.table("items").clone(), appended.clone()],
    });
    target_description
        .tables
        .push(description.table("tags").clone());
    let import_into = |target: &Address, mode: ImportMode| {
        let target = target.clone();
        let engine = fx.engine();
        let store = store.clone();
        async move {
            import(
                engine,
                &store,
                &target,
                ImportOptions {
                    mode,
                    ..Default::default()
                },
                Arc::new(Silent),
            )
            .await
        }
    };

    // Create.
    let target = fx.create("create", &target_description);
    let before = digest_of(fx, &target, check);
    let err = import_into(&target, ImportMode::Create)
        .await
        .err()
        .unwrap_or_else(|| {
            panic!("{check}: an import in create mode into existing tables succeeded")
        });
    assert_eq!(err.kind(), ErrorKind::AlreadyExists, "{check}: {err}");
    let msg = err.to_string();
    assert!(
        msg.contains("events") || msg.contains("items"),
        "{check}: the create-mode refusal names no table: {msg}"
    );
    assert_eq!(
        digest_of(fx, &target, check),
        before,
        "{check}: a refused import changed the target"
    );

    // Append.
    let target = fx.create("append", &target_description);
    let old = image_of(fx, &target, check).loaded().unwrap();
    import_into(&target, ImportMode::Append)
        .await
        .unwrap_or_else(|e| panic!("{check}: append: {e}"));
    let new = image_of(fx, &target, check);
    for name in ["events", "items"] {
        let mut wanted = row_multiset(&old, name, check);
        wanted.extend(row_multiset(&source, name, check));
        wanted.sort();
        let got = row_multiset(&new, name, check);
        assert!(
            got == wanted,
            "{check}: after an append, table {name} has {} rows, not the {} of the target and the archive together (or other values)",
            got.len(),
            wanted.len()
        );
    }
    same(
        check,
        "a table the append did not touch",
        diff_tables(&old, &new, &["tags"]),
    );

    // Replace.
    let target = fx.create("replace", &target_description);
    let old = image_of(fx, &target, check).loaded().unwrap();
    import_into(&target, ImportMode::Replace)
        .await
        .unwrap_or_else(|e| panic!("{check}: replace: {e}"));
    let new = image_of(fx, &target, check);
    same(
        check,
        "the replaced tables",
        diff_tables(&source, &new, &["events", "items"]),
    );
    same(
        check,
        "a table the replace did not touch",
        diff_tables(&old, &new, &["tags"]),
    );
}

/// The repository of a collection check: a local directory, or a bucket
/// of an in-process S3 server (kept alive by the returned value).
struct Repo {
    url: String,
    store: StoreOptions,
    _s3: Option<S3Server>,
}

impl Repo {
    fn local(dir: &std::path::Path) -> Repo {
        Repo {
            url: dir.join("repo").to_str().unwrap().to_string(),
            store: StoreOptions::default(),
            _s3: None,
        }
    }

    fn s3() -> Repo {
        let s3 = S3Server::start();
        s3.create_bucket("repo");
        Repo {
            url: s3.url("repo", "collections"),
            store: s3.store_options(),
            _s3: Some(s3),
        }
    }

    async fn create(&self, fx: &dyn EngineFixture, db: &Address, tables: &[&str], check: &str) {
        collection::create(
            fx.engine().as_ref(),
            db,
            "c",
            &tables.iter().map(|t| t.to_string()).collect::<Vec<_>>(),
            &CreateOptions {
                repo: Some(self.url.clone()),
                store: self.store.clone(),
            },
        )
        .await
        .unwrap_or_else(|e| panic!("{check}: collection create: {e}"));
    }

    async fn backup(
        &self,
        fx: &dyn EngineFixture,
        db: &Address,
        mode: BackupMode,
        cancel: Cancel,
        progress: Arc<dyn Progress>,
    ) -> coffer::Result<collection::CollectionBackupReport> {
        collection::backup::backup(
            fx.engine(),
            db,
            "c",
            CollectionBackupOptions {
                mode,
                store: self.store.clone(),
                ..Default::default()
            },
            Run::new(progress, cancel),
        )
        .await
    }

    /// Restore the latest backup into a new database and compare its
    /// tables with `db`'s.
    async fn restore_matches(
        &self,
        fx: &dyn EngineFixture,
        db: &Address,
        tables: &[&str],
        check: &str,
        what: &str,
    ) {
        let target = fx.fresh("restored");
        let repo = Store::open(&self.url, &self.store).unwrap();
        collection::restore::restore(
            fx.engine(),
            &repo,
            "c",
            &target,
            CollectionRestoreOptions {
                point: RestorePoint::Latest,
                ..Default::default()
            },
            Arc::new(Silent),
        )
        .await
        .unwrap_or_else(|e| panic!("{check}: collection restore: {e}"));
        same(
            check,
            what,
            diff_tables(
                &image_of(fx, db, check),
                &image_of(fx, &target, check),
                tables,
            ),
        );
    }
}

fn has_capture(fx: &dyn EngineFixture, check: &str) -> bool {
    let has = fx.engine().capture().is_some();
    if !has {
        eprintln!(
            "{check}: the {} engine has no change capture; skipped",
            fx.engine().name()
        );
    }
    has
}

/// Change capture loses no write: with a writer committing throughout,
/// backups (full, incremental, auto) run one after another on S3; once the
/// writer stops, one more incremental restores every write. A backup that
/// trimmed log entries of writes that landed during it fails this.
pub async fn capture_loses_no_write(fx: &dyn EngineFixture) {
    let check = "capture_loses_no_write";
    if !has_capture(fx, check) {
        return;
    }
    let description = capture_description(fx.captures_keyless());
    let tables = description.names();
    let db = fx.create("captured", &description);
    let repo = Repo::s3();
    repo.create(fx, &db, &tables, check).await;
    let seed = fastrand::u64(..);
    let writer = Background::start(
        fx.writer(&db, &description, &tables, seed),
        Duration::from_millis(1),
    );
    writer.wait_for(3).await;
    let mut during = 0;
    for mode in [
        BackupMode::Full,
        BackupMode::Incremental,
        BackupMode::Incremental,
        BackupMode::Auto,
        BackupMode::Incremental,
    ] {
        let before = writer.steps();
        repo.backup(fx, &db, mode, Cancel::new(), Arc::new(Silent))
            .await
            .unwrap_or_else(|e| {
                panic!("{check}: {mode:?} backup under a writer (seed {seed}): {e}")
            });
        during += writer.steps() - before;
    }
    let steps = writer.finish(check);
    eprintln!("{check}: {steps} commits, {during} of them during backups");
    assert!(
        during > 0,
        "{check}: the writer committed nothing during the backups"
    );
    let r = repo
        .backup(
            fx,
            &db,
            BackupMode::Incremental,
            Cancel::new(),
            Arc::new(Silent),
        )
        .await
        .unwrap_or_else(|e| panic!("{check}: the last incremental: {e}"));
    assert_eq!(r.manifest.kind, ArchiveKind::Incremental, "{check}");
    repo.restore_matches(
        fx,
        &db,
        &tables,
        check,
        &format!("the latest incremental after {steps} commits, {during} of them during backups (seed {seed})"),
    )
    .await;
}

/// A collection backup that fails (cancelled at several points) trims
/// nothing: the next incremental still holds every change made before it.
pub async fn failed_backup_trims_nothing(fx: &dyn EngineFixture) {
    let check = "failed_backup_trims_nothing";
    if !has_capture(fx, check) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let description = capture_description(fx.captures_keyless());
    let tables = description.names();
    let db = fx.create("captured", &description);
    let repo = Repo::local(dir.path());
    repo.create(fx, &db, &tables, check).await;
    repo.backup(fx, &db, BackupMode::Full, Cancel::new(), Arc::new(Silent))
        .await
        .unwrap_or_else(|e| panic!("{check}: full backup: {e}"));
    let mut writer = fx.writer(&db, &description, &tables, 11);
    for _ in 0..40 {
        writer
            .step()
            .unwrap_or_else(|e| panic!("{check}: writer: {e}"));
    }
    // A backup cancelled before it begins.
    let cancel = Cancel::new();
    cancel.cancel();
    let err = repo
        .backup(fx, &db, BackupMode::Incremental, cancel, Arc::new(Silent))
        .await
        .err()
        .unwrap_or_else(|| panic!("{check}: a cancelled backup succeeded"));
    assert_eq!(err.kind(), ErrorKind::Interrupted, "{check}: {err}");
    // Backups cancelled on their way, with changes between them.
    let mut interrupted = 1;
    for at in [0, 1, 2, 3, 5, 8, 13] {
        let cancel = Cancel::new();
        let result = repo
            .backup(
                fx,
                &db,
                BackupMode::Incremental,
                cancel.clone(),
                CancelAt::new(cancel, at),
            )
            .await;
        if expect_interrupted_or_whole(
            check,
            &format!("an incremental cancelled at progress call {at}"),
            result,
        ) {
            interrupted += 1;
        }
        writer
            .step()
            .unwrap_or_else(|e| panic!("{check}: writer: {e}"));
    }
    eprintln!("{check}: {interrupted} cancelled backups stopped");
    assert!(interrupted > 1, "{check}: no cancel point stopped a backup");
    repo.backup(
        fx,
        &db,
        BackupMode::Incremental,
        Cancel::new(),
        Arc::new(Silent),
    )
    .await
    .unwrap_or_else(|e| panic!("{check}: incremental after the failed ones: {e}"));
    repo.restore_matches(
        fx,
        &db,
        &tables,
        check,
        "the incremental after cancelled ones",
    )
    .await;
}

/// After a table's schema changes, an incremental is refused with a
/// message naming the table; `Auto` takes a full backup, which restores
/// the new schema.
pub async fn incremental_refused_after_schema_change(fx: &dyn EngineFixture) {
    let check = "incremental_refused_after_schema_change";
    if !has_capture(fx, check) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let description = capture_description(fx.captures_keyless());
    let tables = description.names();
    let db = fx.create("captured", &description);
    let repo = Repo::local(dir.path());
    repo.create(fx, &db, &tables, check).await;
    repo.backup(fx, &db, BackupMode::Full, Cancel::new(), Arc::new(Silent))
        .await
        .unwrap_or_else(|e| panic!("{check}: full backup: {e}"));
    for change in [
        SchemaChange::AddColumn,
        SchemaChange::AddUniqueIndex(vec!["name".into(), "id".into()]),
    ] {
        fx.change_schema(&db, "items", change.clone());
        let err = repo
            .backup(
                fx,
                &db,
                BackupMode::Incremental,
                Cancel::new(),
                Arc::new(Silent),
            )
            .await
            .err()
            .unwrap_or_else(|| {
                panic!("{check}: an incremental after a schema change ({change:?}) was taken")
            });
        eprintln!("{check}: after {change:?}: {err}");
        assert!(
            err.to_string().contains("'items'"),
            "{check}: the refusal after {change:?} does not name the table: {err}"
        );
        let r = repo
            .backup(fx, &db, BackupMode::Auto, Cancel::new(), Arc::new(Silent))
            .await
            .unwrap_or_else(|e| panic!("{check}: auto backup after {change:?}: {e}"));
        assert_eq!(
            r.manifest.kind,
            ArchiveKind::Full,
            "{check}: auto after a schema change ({change:?})"
        );
    }
    repo.restore_matches(
        fx,
        &db,
        &tables,
        check,
        "the full backup after a schema change",
    )
    .await;
}

/// A check of the suite, as [`CHECKS`] lists it.
pub type Check = for<'a> fn(&'a dyn EngineFixture) -> Pin<Box<dyn Future<Output = ()> + 'a>>;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// Every check of the suite, by name, in the order [`run_all`] runs
        /// them.
        pub const CHECKS: &[(&str, Check)] = &[
            $((stringify!($name), |fx| Box::pin($name(fx)))),*
        ];
    };
}

checks!(
    description_reads_back,
    backup_restore_round_trip,
    export_import_round_trip,
    snapshot_under_concurrent_writer,
    restore_atomic_under_cancel,
    import_atomic_under_cancel,
    import_modes,
    capture_loses_no_write,
    failed_backup_trims_nothing,
    incremental_refused_after_schema_change,
);

/// The suite as tests of an engine's own: `engine_suite!(MyFixture::new())`
/// in a test file makes one `#[tokio::test]` per check (so they run in
/// parallel and fail by name), each on a fixture of its own, and a test
/// that fails when a check of [`CHECKS`] has no test.
#[macro_export]
macro_rules! engine_suite {
    ($fixture:expr) => {
        $crate::engine_suite!(@tests $fixture;
            description_reads_back,
            backup_restore_round_trip,
            export_import_round_trip,
            snapshot_under_concurrent_writer,
            restore_atomic_under_cancel,
            import_atomic_under_cancel,
            import_modes,
            capture_loses_no_write,
            failed_backup_trims_nothing,
            incremental_refused_after_schema_change,
        );
    };
    (@tests $fixture:expr; $($name:ident),* $(,)?) => {
        /// A new check of the suite needs a test here too.
        #[test]
        fn every_check_of_the_suite_has_a_test() {
            let here = [$(stringify!($name)),*];
            let suite: Vec<&str> = $crate::engines::CHECKS.iter().map(|(n, _)| *n).collect();
            assert_eq!(here.as_slice(), suite.as_slice());
        }
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                $crate::engines::$name(&$fixture).await;
            }
        )*
    };
}

/// Run every check of the suite on `fx`, one after another.
pub async fn run_all(fx: &dyn EngineFixture) {
    for (_, check) in CHECKS {
        check(fx).await;
    }
}
