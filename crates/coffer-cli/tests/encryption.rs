//! Encrypted archives and collections through the real binary: nothing of
//! the data or schema is readable without a key, integrity is checked
//! without one, the `age` tool alone opens an archive, a rekey rewrites only
//! key material, and bad keys get one sentence with nothing written.

mod common;
use common::*;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use coffer_testkit::compare::{assert_same_database, assert_same_tables};
use coffer_testkit::keys::{identity, passphrase};
use rusqlite::Connection;

/// Names and values that must not appear in any stored file.
const SECRETS: &[&str] = &[
    "zebra_accounts",
    "classified_balance",
    "TOPSECRET-4242",
    "idx_zebra_owner",
];

fn create_secret_db(path: &Path) {
    let c = Connection::open(path).unwrap();
    c.execute_batch(
        "CREATE TABLE zebra_accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, classified_balance REAL, note BLOB);
         CREATE INDEX idx_zebra_owner ON zebra_accounts(owner);
         CREATE TABLE plain (k TEXT PRIMARY KEY, v) WITHOUT ROWID;",
    )
    .unwrap();
    let mut ins = c
        .prepare("INSERT INTO zebra_accounts (owner, classified_balance, note) VALUES (?1, ?2, ?3)")
        .unwrap();
    for i in 0..3000i64 {
        let owner = if i % 100 == 0 {
            "TOPSECRET-4242".to_string()
        } else {
            format!("owner {i} ✓\u{0}\t\"")
        };
        let note: Option<Vec<u8>> = (i % 3 != 0).then(|| vec![(i % 256) as u8; (i % 50) as usize]);
        ins.execute(rusqlite::params![owner, i as f64 * -0.1, note])
            .unwrap();
    }
    c.execute_batch(
        "INSERT INTO plain VALUES ('', NULL), ('a', x'00'), ('b', 9223372036854775807), ('c', -0.0), ('d', 'text');",
    )
    .unwrap();
}

/// A temporary directory with the secret database `app.db` and an age
/// identity `me.key`.
struct Setup {
    dir: tempfile::TempDir,
    db: PathBuf,
    id: PathBuf,
    to: String,
}

impl Setup {
    fn new() -> Setup {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("app.db");
        create_secret_db(&db);
        let (id, to) = identity(dir.path(), "me.key");
        Setup { dir, db, id, to }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// An encrypted backup (to `me.key`, with `extra`) at `name`.
    fn backup(&self, name: &str, extra: &[&str]) -> PathBuf {
        let archive = self.path(name);
        ok(&[
            &["backup", s(&self.db), s(&archive), "--encrypt-to", &self.to],
            extra,
        ]
        .concat());
        archive
    }
}

/// `sha256sum -c SHA256SUMS` passes in `dir`.
fn assert_sums_check(dir: &Path) {
    let status = std::process::Command::new("sha256sum")
        .args(["-c", "--quiet", "SHA256SUMS"])
        .current_dir(dir)
        .status()
        .unwrap();
    assert!(status.success(), "sha256sum -c failed in {}", dir.display());
}

/// Every file under `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    walk(dir)
        .into_iter()
        .filter(|p| p.is_file())
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            (p.strip_prefix(dir).unwrap().to_path_buf(), bytes)
        })
        .collect()
}

fn assert_nothing_readable(dir: &Path) {
    assert_in_no_file(dir, SECRETS);
}

#[test]
fn nothing_of_the_data_or_schema_is_readable_without_the_key() {
    let t = Setup::new();
    let (db, id, to) = (&t.db, &t.id, &t.to);
    let backup = t.backup("backup", &[]);
    let export = t.path("export");
    ok(&[
        "export",
        s(db),
        s(&export),
        "--encrypt-to",
        to,
        "--format",
        "csv",
    ]);
    for archive in [&backup, &export] {
        assert_nothing_readable(archive);
        // Without a key: the envelope only, saying to whom it is encrypted.
        let ls = ok_json(&["ls", s(archive), "--json"]);
        assert_eq!(ls["encrypted"], true, "{ls}");
        assert_eq!(ls["encryption"]["recipients"][0], to.as_str());
        assert!(ls.get("tables").is_none(), "{ls}");
        let text = ok(&["ls", s(archive)]);
        assert!(
            text.contains(to.as_str()) && text.contains("--identity"),
            "{text}"
        );
        // With it: the tables.
        let ls = ok_json(&["ls", s(archive), "--json", "-i", s(id)]);
        let mut names: Vec<&str> = ls["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["name"].as_str().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["plain", "zebra_accounts"]);
    }
    let out = t.path("restored.db");
    ok(&["restore", s(&backup), s(&out), "-i", s(id)]);
    assert_same_database(db, &out);
    let imported = t.path("imported.db");
    ok(&["import", s(&export), s(&imported), "-i", s(id)]);
    assert_same_tables(db, &imported, &["plain", "zebra_accounts"]);
}

/// The steps of docs/FORMAT.md ("Opening an encrypted archive without
/// coffer"), with the `age` command-line tool.
const AGE_STEPS: &str = r#"set -eu
age -d -i "$IDENTITY" -o "$OUT/archive.key" "$ARCHIVE/key.age"
age -d -i "$OUT/archive.key" "$ARCHIVE/index.age" |
while IFS="$(printf '\t')" read -r stored path; do
  mkdir -p "$OUT/$(dirname "$path")"
  age -d -i "$OUT/archive.key" -o "$OUT/$path" "$ARCHIVE/$stored"
done
rm "$OUT/archive.key"
"#;

#[test]
fn the_age_tool_alone_opens_an_archive_as_an_unencrypted_run_writes_it() {
    assert!(
        std::process::Command::new("age")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "this test needs the age command-line tool (Debian package `age`; .ci/run installs it)"
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("nasty.db");
    coffer_testkit::nasty::create_nasty_db(&db).unwrap();
    let (id, to) = identity(dir.path(), "me.key");
    let archive = dir.path().join("encrypted");
    ok(&[
        "backup",
        s(&db),
        s(&archive),
        "--encrypt-to",
        &to,
        "--part-size",
        "32KiB",
    ]);
    // The stored files check with the standard tool, without a key.
    assert_sums_check(&archive);

    let plain = dir.path().join("plain");
    open_with_age(&id, &archive, &plain);
    // An archive as an unencrypted backup writes it: a plain manifest,
    // SHA256SUMS that the standard tool checks, Parquet files by table.
    assert_sums_check(&plain);
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(plain.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["format"], "coffer-archive");
    assert!(
        walk(&plain)
            .iter()
            .any(|p| p.extension().is_some_and(|e| e == "parquet"))
    );
    // The same manifest coffer reads from the encrypted archive.
    let mut a = ok_json(&["ls", s(&plain), "--json"]);
    let mut b = ok_json(&["ls", s(&archive), "--json", "-i", s(&id)]);
    a["archive"] = serde_json::Value::Null;
    b["archive"] = serde_json::Value::Null;
    assert_eq!(a, b);
    ok(&["verify", s(&plain)]);
    let out = dir.path().join("restored.db");
    ok(&["restore", s(&plain), s(&out)]);
    assert_same_database(&db, &out);
}

/// Run the steps of docs/FORMAT.md on `archive` with `identity` into `out`.
fn open_with_age(identity: &Path, archive: &Path, out: &Path) {
    std::fs::create_dir_all(out).unwrap();
    let run = std::process::Command::new("sh")
        .arg("-c")
        .arg(AGE_STEPS)
        .env("IDENTITY", identity)
        .env("ARCHIVE", archive)
        .env("OUT", out)
        .output()
        .expect("the age command-line tool (Debian package `age`; .ci/run installs it)");
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
}

#[test]
fn the_age_tool_alone_opens_a_collection_backup_through_the_collections_key() {
    let t = Setup::new();
    let (db, id, to) = (&t.db, &t.id, t.to.as_str());
    let repo = t.path("repo");
    ok(&[
        "collection",
        "create",
        "c",
        "--db",
        s(db),
        "--table",
        "zebra_accounts",
        "--repo",
        s(&repo),
        "--encrypt-to",
        to,
    ]);
    let b = ok_json(&["collection", "backup", "c", "--db", s(db), "--json"]);
    let backup = repo
        .join("collections/c")
        .join(b["backup"].as_str().unwrap());
    // First the collection's key, with the user's identity; then the
    // backup, with the collection's key.
    let collection_key = t.path("collection.key");
    let run = std::process::Command::new("age")
        .arg("-d")
        .arg("-i")
        .arg(id)
        .arg("-o")
        .arg(&collection_key)
        .arg(repo.join("collections/c/key.age"))
        .status()
        .unwrap();
    assert!(run.success());
    let plain = t.path("plain");
    open_with_age(&collection_key, &backup, &plain);
    ok(&["verify", s(&plain)]);
    let ls = ok_json(&["ls", s(&plain), "--json"]);
    assert_eq!(ls["kind"], "full");
    assert_eq!(ls["tables"][0]["name"], "zebra_accounts");
    assert_eq!(ls["tables"][0]["rows"], 3000);
}

/// Run coffer with `COFFER_PASSPHRASE` set.
fn with_passphrase(args: &[&str], phrase: &str) -> std::process::Output {
    coffer_bin()
        .args(args)
        .env("COFFER_PASSPHRASE", phrase)
        .output()
        .unwrap()
}

#[test]
fn a_passphrase_opens_what_it_encrypted_and_another_is_refused() {
    let setup = Setup::new();
    let (dir, db) = (setup.dir.path(), &setup.db);
    let archive = dir.join("a");
    let out = with_passphrase(
        &["backup", s(db), s(&archive), "--json"],
        "correct horse battery staple",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_nothing_readable(&archive);
    let m: serde_json::Value =
        serde_json::from_slice(&std::fs::read(archive.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["encryption"]["passphrase"], true);

    let target = dir.join("restored.db");
    let err = fails(&["restore", s(&archive), s(&target)]);
    assert!(
        err.contains("passphrase") && err.contains("COFFER_PASSPHRASE"),
        "{err}"
    );
    let wrong = passphrase(dir, "wrong.txt", "incorrect horse");
    let err = fails(&[
        "restore",
        s(&archive),
        s(&target),
        "--passphrase-file",
        s(&wrong),
    ]);
    assert!(
        err.contains("the passphrase does not open") && err.contains("key.age"),
        "{err}"
    );
    assert!(!target.exists());
    let right = passphrase(dir, "right.txt", "correct horse battery staple");
    ok(&[
        "restore",
        s(&archive),
        s(&target),
        "--passphrase-file",
        s(&right),
    ]);
    assert_same_database(db, &target);
    // The passphrase is never printed or stored.
    for (path, bytes) in files(&archive) {
        assert!(
            !String::from_utf8_lossy(&bytes).contains("battery"),
            "{}",
            path.display()
        );
    }
}

#[test]
fn bad_keys_get_one_sentence_and_nothing_is_written() {
    let setup = Setup::new();
    let (dir, db, to) = (setup.dir.path(), &setup.db, setup.to.as_str());
    let (other, other_to) = identity(dir, "other.key");
    let archive = setup.backup("a", &[]);
    let target = setup.path("restored.db");
    let a = s(&archive);
    let t = s(&target);

    let err = fails(&["restore", a, t]);
    assert!(
        err.contains("is encrypted") && err.contains(to) && err.contains("--identity"),
        "{err}"
    );
    let err = fails(&["restore", a, t, "-i", s(&other)]);
    assert!(
        err.contains("other.key") && err.contains("key.age") && err.contains(to),
        "{err}"
    );
    assert!(
        !other_to.is_empty() && !err.contains("AGE-SECRET-KEY"),
        "{err}"
    );
    let garbage = dir.join("garbage.key");
    std::fs::write(&garbage, "not a key\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o600)).unwrap();
    let err = fails(&["restore", a, t, "-i", s(&garbage)]);
    assert!(
        err.contains("garbage.key line 1") && err.contains("age-keygen"),
        "{err}"
    );
    let err = fails(&["restore", a, t, "-i", s(&dir.join("absent.key"))]);
    assert!(err.contains("absent.key"), "{err}");

    // A damaged key file is named.
    let key = archive.join("key.age");
    let mut bytes = std::fs::read(&key).unwrap();
    let n = bytes.len() - 5;
    bytes[n] ^= 1;
    std::fs::write(&key, &bytes).unwrap();
    let err = fails(&["restore", a, t, "-i", s(&setup.id)]);
    assert!(err.contains("key.age is damaged"), "{err}");
    let err = fails(&["verify", a]);
    assert!(err.contains("key.age"), "{err}");
    assert!(!target.exists());
    assert!(restore_leftovers(dir).is_empty());

    // Bad recipients when writing.
    let b = dir.join("b");
    let err = fails(&["backup", s(db), s(&b), "--encrypt-to", "age1nonsense"]);
    assert!(
        err.contains("--encrypt-to") && err.contains("not an age X25519 public key"),
        "{err}"
    );
    let pass = passphrase(dir, "p.txt", "pass");
    let err = fails(&[
        "backup",
        s(db),
        s(&b),
        "--encrypt-to",
        to,
        "--passphrase-file",
        s(&pass),
    ]);
    assert!(err.contains("not both"), "{err}");
    let empty = dir.join("empty.pub");
    std::fs::write(&empty, "# nobody\n").unwrap();
    let err = fails(&["backup", s(db), s(&b), "--encrypt-to-file", s(&empty)]);
    assert!(
        err.contains("empty.pub") && err.contains("no public key"),
        "{err}"
    );
    assert!(!b.join("manifest.json").exists());
}

#[test]
fn an_identity_file_others_can_read_is_warned_about() {
    let t = Setup::new();
    let id = &t.id;
    let archive = t.backup("a", &[]);
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(id, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = coffer(&["ls", s(&archive), "-i", s(id)]);
    assert!(out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("me.key can be read by other users") && err.contains("chmod 600"),
        "{err}"
    );
    std::fs::set_permissions(id, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = coffer(&["ls", s(&archive), "-i", s(id)]);
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The envelope of the archive at `dir`, to tamper with.
fn envelope(dir: &Path) -> coffer::crypt::Envelope {
    coffer::crypt::Envelope::from_bytes(&std::fs::read(dir.join("manifest.json")).unwrap(), "m")
        .unwrap()
}

#[test]
fn verify_checks_stored_files_without_a_key_and_their_contents_with_one() {
    let t = Setup::new();
    let (dir, id) = (t.dir.path(), &t.id);
    let archive = t.backup("a", &["--part-size", "8KiB"]);
    let report = ok_json(&["verify", s(&archive), "--json"]);
    assert_eq!(report["contents_checked"], false, "{report}");
    assert_eq!(report["encrypted"], true);
    let checked = report["checked_files"].as_u64().unwrap();
    assert!(checked > 4, "{report}");
    let report = ok_json(&["verify", s(&archive), "--json", "-i", s(id)]);
    assert_eq!(report["contents_checked"], true, "{report}");

    // Two stored files swapped, with the envelope's checksums made to
    // match, as anyone who can write to the bucket can: without a key it
    // looks intact; with the key the contents are caught.
    let copy = dir.join("swapped");
    std::fs::create_dir(&copy).unwrap();
    for (rel, bytes) in files(&archive) {
        std::fs::create_dir_all(copy.join(&rel).parent().unwrap()).unwrap();
        std::fs::write(copy.join(&rel), bytes).unwrap();
    }
    let (x, y) = (copy.join("data/000000.age"), copy.join("data/000001.age"));
    let (bx, by) = (std::fs::read(&x).unwrap(), std::fs::read(&y).unwrap());
    std::fs::write(&x, &by).unwrap();
    std::fs::write(&y, &bx).unwrap();
    let mut e = envelope(&copy);
    let (fx, fy) = (
        e.file("data/000000.age").unwrap().clone(),
        e.file("data/000001.age").unwrap().clone(),
    );
    for f in &mut e.files {
        if f.path == fx.path {
            (f.size, f.sha256) = (fy.size, fy.sha256.clone());
        } else if f.path == fy.path {
            (f.size, f.sha256) = (fx.size, fx.sha256.clone());
        }
    }
    e.seal();
    std::fs::write(copy.join("manifest.json"), e.to_bytes()).unwrap();
    std::fs::write(copy.join("SHA256SUMS"), e.sha256sums()).unwrap();
    ok(&["verify", s(&copy)]);
    let err = fails(&["verify", s(&copy), "-i", s(id)]);
    assert!(
        err.contains("does not decrypt to what the manifest says"),
        "{err}"
    );
    let target = dir.join("r.db");
    let err = fails(&["restore", s(&copy), s(&target), "-i", s(id)]);
    assert!(err.contains("damaged"), "{err}");
    assert!(!target.exists());

    // One flipped byte is caught without a key, naming the stored file.
    let f = archive.join("data/000002.age");
    let mut bytes = std::fs::read(&f).unwrap();
    bytes[40] ^= 0x20;
    std::fs::write(&f, &bytes).unwrap();
    let err = fails(&["verify", s(&archive)]);
    assert!(err.contains("data/000002.age"), "{err}");
    let err = fails(&["verify", s(&archive), "-i", s(id)]);
    assert!(err.contains("damaged"), "{err}");
}

#[test]
fn rekey_makes_only_the_new_recipients_open_it_and_rewrites_no_data_file() {
    let setup = Setup::new();
    let (dir, db) = (setup.dir.path(), &setup.db);
    let (old, old_to) = identity(dir, "old.key");
    let (new, new_to) = identity(dir, "new.key");
    let (second, second_to) = identity(dir, "second.key");
    let archive = dir.join("a");
    let a = s(&archive);
    ok(&["backup", s(db), a, "--encrypt-to", &old_to]);
    let data_before: BTreeMap<_, _> = files(&archive)
        .into_iter()
        .filter(|(p, _)| p.starts_with("data"))
        .collect();
    // A key file left by a rekey that was killed before it switched.
    std::fs::write(archive.join("key-0123.age"), b"left over").unwrap();

    let err = fails(&["rekey", a, "--encrypt-to", &new_to]);
    assert!(err.contains("--identity"), "{err}");
    let err = fails(&["rekey", a, "-i", s(&new), "--encrypt-to", &new_to]);
    assert!(err.contains("new.key"), "{err}");
    let report = ok_json(&[
        "rekey",
        a,
        "-i",
        s(&old),
        "--encrypt-to",
        &new_to,
        "--encrypt-to",
        &second_to,
        "--json",
    ]);
    assert_eq!(
        report["rekeyed"][0]["encryption"]["recipients"],
        serde_json::json!([new_to, second_to])
    );
    let data_after: BTreeMap<_, _> = files(&archive)
        .into_iter()
        .filter(|(p, _)| p.starts_with("data"))
        .collect();
    assert_eq!(data_before, data_after, "a data file was rewritten");
    let keys: Vec<_> = files(&archive)
        .into_keys()
        .filter(|p| p.to_string_lossy().starts_with("key"))
        .collect();
    assert_eq!(keys.len(), 1, "{keys:?}");
    assert_sums_check(&archive);

    let target = dir.join("r.db");
    let err = fails(&["restore", a, s(&target), "-i", s(&old)]);
    assert!(err.contains("old.key"), "{err}");
    ok(&["verify", a, "-i", s(&second)]);
    ok(&["restore", a, s(&target), "-i", s(&new)]);
    assert_same_database(db, &target);

    // To a passphrase, and back.
    let phrase = passphrase(dir, "p.txt", "a long passphrase");
    ok(&[
        "rekey",
        a,
        "-i",
        s(&new),
        "--new-passphrase-file",
        s(&phrase),
    ]);
    let err = fails(&["ls", a, "-i", s(&new)]);
    assert!(err.contains("passphrase"), "{err}");
    ok(&["ls", a, "--passphrase-file", s(&phrase)]);
    ok(&[
        "rekey",
        a,
        "--passphrase-file",
        s(&phrase),
        "--encrypt-to",
        &old_to,
    ]);
    ok(&["verify", a, "-i", s(&old)]);

    // A plain archive has no key to change.
    let plain = dir.join("plain");
    ok(&["backup", s(db), s(&plain)]);
    let err = fails(&["rekey", s(&plain), "-i", s(&old), "--encrypt-to", &new_to]);
    assert!(err.contains("is not encrypted"), "{err}");
}

#[test]
fn leftovers_of_an_interrupted_encrypted_backup_are_cleaned_up() {
    let setup = Setup::new();
    let (dir, db) = (setup.dir.path(), &setup.db);
    let (id, to) = (setup.id.clone(), setup.to.clone());
    let archive = dir.join("a");
    std::fs::create_dir_all(archive.join("data")).unwrap();
    std::fs::write(archive.join("data/000000.age"), b"half").unwrap();
    std::fs::write(archive.join("index.age"), b"half").unwrap();
    std::fs::write(archive.join("key.age"), b"half").unwrap();
    // Not an archive: refused by every reader.
    let err = fails(&["verify", s(&archive)]);
    assert!(err.contains("no manifest.json"), "{err}");
    ok(&["backup", s(db), s(&archive), "--encrypt-to", &to]);
    ok(&["verify", s(&archive), "-i", s(&id)]);
}

fn snapshot(db: &Path, to: &Path) {
    Connection::open(db)
        .unwrap()
        .execute(&format!("VACUUM INTO '{}'", s(to)), [])
        .unwrap();
}

#[test]
fn an_encrypted_collection_backs_up_without_a_key_and_restores_every_point_with_one() {
    let setup = Setup::new();
    let (dir, db) = (setup.dir.path(), &setup.db);
    let d = s(db);
    let (id, to) = (setup.id.clone(), setup.to.clone());
    let (new, new_to) = identity(dir, "new.key");
    let repo = dir.join("repo");
    let r = s(&repo);
    ok(&[
        "collection",
        "create",
        "c",
        "--db",
        d,
        "--table",
        "zebra_accounts",
        "--table",
        "plain",
        "--repo",
        r,
        "--encrypt-to",
        &to,
    ]);
    let c = Connection::open(db).unwrap();
    let mut points = Vec::new();
    let rounds = [
        "",
        "UPDATE zebra_accounts SET classified_balance = -classified_balance WHERE id % 7 = 0;
         DELETE FROM zebra_accounts WHERE id % 11 = 0; INSERT INTO plain VALUES ('e', x'ff00');",
        "UPDATE plain SET k = 'z' WHERE k = 'a'; DELETE FROM plain WHERE k = '';
         INSERT INTO zebra_accounts (owner) VALUES ('TOPSECRET-4242 again');",
        // A schema change: the next backup must be a full one.
        "ALTER TABLE zebra_accounts ADD COLUMN extra TEXT DEFAULT 'x';
         UPDATE zebra_accounts SET extra = NULL WHERE id < 10;",
        "DELETE FROM zebra_accounts WHERE id > 2000;",
    ];
    for (i, sql) in rounds.iter().enumerate() {
        c.execute_batch(sql).unwrap();
        // No key at hand: taking a backup needs none.
        let b = ok_json(&["collection", "backup", "c", "--db", d, "--auto", "--json"]);
        let want = if i == 0 || i == 3 {
            "full"
        } else {
            "incremental"
        };
        assert_eq!(b["kind"], want, "round {i}: {b}");
        let copy = dir.join(format!("point{i}.db"));
        snapshot(db, &copy);
        points.push((b["backup"].as_str().unwrap().to_string(), copy));
    }
    assert_nothing_readable(&repo);

    // Without a key: restore is refused, list and prune still work.
    let target = dir.join("restored.db");
    let err = fails(&[
        "collection",
        "restore",
        "c",
        "--repo",
        r,
        "--into",
        s(&target),
    ]);
    assert!(err.contains("--identity") && err.contains(&to), "{err}");
    assert!(!target.exists());
    let list = ok(&["collection", "list", "--repo", r]);
    assert!(list.contains("(encrypted)"), "{list}");

    for (point, copy) in &points {
        let out = dir.join(format!("{point}.db"));
        ok(&[
            "collection",
            "restore",
            "c",
            "--repo",
            r,
            "--into",
            s(&out),
            "--backup",
            point,
            "-i",
            s(&id),
        ]);
        assert_same_tables(copy, &out, &["plain", "zebra_accounts"]);
    }
    let show = ok_json(&[
        "collection",
        "show",
        "c",
        "--repo",
        r,
        "--json",
        "-i",
        s(&id),
    ]);
    let shown: usize = show["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_array().unwrap().len())
        .sum();
    assert_eq!(shown, points.len(), "{show}");

    // A rekey of the repository: only the new identity opens it.
    ok(&["rekey", r, "-i", s(&id), "--encrypt-to", &new_to]);
    let out = dir.join("after-rekey.db");
    let restore = |key: &Path| {
        coffer(&[
            "collection",
            "restore",
            "c",
            "--repo",
            r,
            "--into",
            s(&out),
            "-i",
            s(key),
            "--force",
        ])
    };
    assert!(!restore(&id).status.success());
    assert!(restore(&new).status.success());
    assert_same_tables(
        &points.last().unwrap().1,
        &out,
        &["plain", "zebra_accounts"],
    );
    // Backups go on after the rekey, still without a key.
    c.execute_batch("INSERT INTO plain VALUES ('after', 1)")
        .unwrap();
    let b = ok_json(&[
        "collection",
        "backup",
        "c",
        "--db",
        d,
        "--incremental",
        "--json",
    ]);
    assert_eq!(b["kind"], "incremental", "{b}");

    // Prune without a key keeps the newest chain.
    let pruned = ok_json(&[
        "collection",
        "prune",
        "c",
        "--repo",
        r,
        "--keep-chains",
        "1",
        "--json",
    ]);
    assert_eq!(
        pruned["deleted"].as_array().map(Vec::len),
        Some(3),
        "{pruned}"
    );

    // A repository that lost collection.json cannot make the backups
    // unencrypted.
    std::fs::remove_file(repo.join("collections/c/collection.json")).unwrap();
    let err = fails(&["collection", "backup", "c", "--db", d]);
    assert!(
        err.contains("is encrypted") && err.contains("collection.json"),
        "{err}"
    );
}
