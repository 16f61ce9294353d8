//! `coffer collection ...`: the arguments of the collection commands.

use clap::{Args, Subcommand};

/// Where a collection's repository is: given, or found from the database
/// the collection was created in.
#[derive(Debug, Args)]
#[group(required = true, multiple = false)]
pub struct RepoChoice {
    /// The repository holding the collection.
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,

    /// The database the collection was created in; its repository is the one
    /// recorded there (DB.backups by default).
    #[arg(long, value_name = "DB")]
    pub db: Option<String>,
}

/// A collection name as the command line takes it: checked at once, so a
/// bad one is a usage error (exit status 2) like any other bad argument.
fn parse_name(text: &str) -> Result<String, String> {
    coffer::ops::collection::repo::check_name(text)
        .map(|()| text.to_string())
        .map_err(|e| e.to_string())
}

/// A time from the command line: RFC 3339, or as in a backup id
/// (`20261124T101500Z`); a bad one is a usage error (exit status 2).
fn parse_time(text: &str) -> Result<jiff::Timestamp, String> {
    text.parse()
        .ok()
        .or_else(|| coffer::ops::collection::repo::id_time(&format!("{text}_full")))
        .ok_or_else(|| {
            format!(
                "'{text}' is not an RFC 3339 time; write it like 2026-11-24T10:15:00Z (or 20261124T101500Z, as in a backup id)"
            )
        })
}

/// The collection commands.
#[derive(Debug, Subcommand)]
pub enum CollectionCommand {
    #[command(
        about = "Create a collection: a named set of tables with change capture",
        long_about = "\
Record the collection NAME of the tables given with --table in the database DB and \
in its repository, and set up change capture for those tables: triggers that log \
the keys of changed rows (not the rows) in small tables beside them, so that an \
incremental backup costs in proportion to what changed.

The repository is a directory beside the database (DB.backups) unless --repo \
names another location (a directory, file:// or s3://BUCKET/PREFIX). A table \
belongs to one collection at most. Nothing is installed if any table cannot be \
captured.

On PostgreSQL the capture lives in the schema _coffer and needs no superuser \
(the tables' owner may set it up); each table needs a primary key or a unique \
index on NOT NULL columns. Name a table of another schema than public as \
SCHEMA.TABLE.",
        after_help = "\
Examples:
  coffer collection create orders --db app.db --table orders --table order_items
  coffer collection create main --db app.db --table users --repo s3://backups/app
  coffer collection create shop --db postgres://app@db/shop --table orders \\
      --table billing.invoices --repo s3://backups/shop"
    )]
    Create(CreateArgs),

    #[command(
        about = "Back up a collection: full, or incremental since the last backup",
        long_about = "\
Take a backup of the collection NAME of DB into its repository, in one consistent \
snapshot of all its tables. Without options it is a full backup, which starts a \
new chain. --incremental stores only the rows inserted, changed or deleted since \
the latest backup, and fails, saying why, when that is not possible (no backup \
yet, a table's schema changed, the database was restored); --auto takes an \
incremental when possible and a full backup otherwise.

Writes that land during the backup are kept for the next one; a backup that fails \
or is interrupted commits nothing and removes nothing from the change logs. Two \
backups of one collection never run at once: the second fails, naming the first.",
        after_help = "\
Examples:
  coffer collection backup orders --db app.db
  coffer collection backup orders --db app.db --incremental
  coffer collection backup orders --db app.db --auto    # for schedules"
    )]
    Backup(CollectionBackupArgs),

    #[command(
        about = "Restore a collection's tables as of any backup",
        long_about = "\
Rebuild the tables of the collection NAME in the database DB as they were at one \
backup: the chain's full backup, then each incremental in order. The latest \
backup by default; --backup names one, --at takes the latest at or before a time. \
Only the repository is read: the source database is not needed.

Every data file is checked against its size and SHA-256. The tables are added to \
DB if it exists (a table of the same name is an error unless --force) or a new \
database is created; either way all at once, so a failed or interrupted restore \
leaves DB as it was.",
        after_help = "\
Examples:
  coffer collection restore orders --repo app.db.backups --into copy.db
  coffer collection restore orders --repo s3://backups/app --into app.db --force \\
      --at 2026-11-24T10:00:00Z
  coffer collection restore orders --repo app.db.backups --into t.db --table orders \\
      --backup 20261124T101500Z_incremental
  coffer collection restore shop --repo s3://backups/shop \\
      --into postgres://me@localhost/scratch --table billing.invoices"
    )]
    Restore(CollectionRestoreArgs),

    #[command(
        about = "List the collections of a repository",
        after_help = "\
Examples:
  coffer collection list --repo app.db.backups
  coffer collection list --repo s3://backups/app --json"
    )]
    List(CollectionListArgs),

    #[command(
        about = "Show a collection's chains and backups",
        long_about = "\
Show the collection NAME of the repository: its tables, then each chain (a full \
backup and the incrementals on top of it) with every backup's kind, backup point, \
rows upserted and deleted, and size.",
        after_help = "\
Examples:
  coffer collection show orders --repo app.db.backups
  coffer collection show orders --repo s3://backups/app --json"
    )]
    Show(CollectionShowArgs),

    #[command(
        about = "Remove a collection's change capture (and with --purge its backups)",
        long_about = "\
Remove the triggers and change logs of the collection NAME from DB, and its \
record. Its backups stay in the repository, restorable, unless --purge, which \
deletes them and the collection's description from the repository first.",
        after_help = "\
Examples:
  coffer collection drop orders --db app.db
  coffer collection drop orders --db app.db --purge"
    )]
    Drop(CollectionDropArgs),

    #[command(
        about = "Delete a collection's old chains, keeping the newest",
        long_about = "\
Delete every chain of the collection NAME but the newest N: whole chains only, so \
no kept incremental ever loses the backups it builds on. Each backup's manifest \
is deleted before its files. --dry-run shows what would go.",
        after_help = "\
Examples:
  coffer collection prune orders --repo app.db.backups --keep-chains 4
  coffer collection prune orders --repo s3://backups/app --keep-chains 2 --dry-run"
    )]
    Prune(CollectionPruneArgs),
}

/// Arguments of `coffer collection create`.
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// The collection's name: letters, digits, '_', '-' and '.'.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub name: String,

    /// The database: a file path or sqlite://PATH.
    #[arg(long, value_name = "DB")]
    pub db: String,

    /// A table of the collection; repeat for more.
    #[arg(long = "table", value_name = "TABLE", required = true)]
    pub tables: Vec<String>,

    /// Where the backups go (default: the directory DB.backups beside the database).
    #[arg(long, value_name = "URL")]
    pub repo: Option<String>,

    /// Encrypt the collection: every backup of it is then encrypted, and
    /// taking one needs no key.
    #[command(flatten)]
    pub encrypt: super::EncryptArgs,
}

/// Arguments of `coffer collection backup`.
#[derive(Debug, Args)]
pub struct CollectionBackupArgs {
    /// The collection.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub name: String,

    /// The database the collection was created in.
    #[arg(long, value_name = "DB")]
    pub db: String,

    /// A full backup, starting a new chain (the default; for scripts that
    /// want to say so).
    #[arg(long, conflicts_with_all = ["auto", "incremental"])]
    pub full: bool,

    /// Store only the changes since the latest backup; fail if that is not possible.
    #[arg(long, conflicts_with = "auto")]
    pub incremental: bool,

    /// An incremental when possible, a full backup otherwise.
    #[arg(long)]
    pub auto: bool,

    #[command(flatten)]
    pub write: super::WriteArgs,

    /// Connections that read tables in parallel, all at the same moment
    /// (1 reads every table on one connection); by default one per core,
    /// at most 8.
    #[arg(long, value_name = "N", default_value_t = super::default_scanners(), value_parser = clap::value_parser!(u16).range(1..=64))]
    pub scanners: u16,
}

/// Arguments of `coffer collection restore`.
#[derive(Debug, Args)]
pub struct CollectionRestoreArgs {
    /// The collection.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub name: String,

    #[command(flatten)]
    pub repo: RepoChoice,

    /// The database to restore into (created if absent).
    #[arg(long, value_name = "DB")]
    pub into: String,

    /// Restore to this backup (an id from `coffer collection show`).
    #[arg(long, value_name = "ID", conflicts_with = "at")]
    pub backup: Option<String>,

    /// Restore to the latest backup at or before this time (RFC 3339, e.g. 2026-11-24T10:00:00Z, or as in a backup id, 20261124T100000Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub at: Option<jiff::Timestamp>,

    /// Restore only this table; repeat for more. All of the collection's by default.
    #[arg(long = "table", value_name = "TABLE")]
    pub tables: Vec<String>,

    /// Replace tables that already exist in DB.
    #[arg(long, short)]
    pub force: bool,
}

/// Arguments of `coffer collection list`.
#[derive(Debug, Args)]
pub struct CollectionListArgs {
    #[command(flatten)]
    pub repo: RepoChoice,
}

/// Arguments of `coffer collection show`.
#[derive(Debug, Args)]
pub struct CollectionShowArgs {
    /// The collection.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub name: String,

    #[command(flatten)]
    pub repo: RepoChoice,
}

/// Arguments of `coffer collection drop`.
#[derive(Debug, Args)]
pub struct CollectionDropArgs {
    /// The collection.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub name: String,

    /// The database the collection was created in.
    #[arg(long, value_name = "DB")]
    pub db: String,

    /// Also delete the collection's backups from its repository.
    #[arg(long)]
    pub purge: bool,
}

/// Arguments of `coffer collection prune`.
#[derive(Debug, Args)]
pub struct CollectionPruneArgs {
    /// The collection.
    #[arg(value_name = "NAME", value_parser = parse_name)]
    pub name: String,

    #[command(flatten)]
    pub repo: RepoChoice,

    /// How many of the newest chains to keep (at least 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
    pub keep_chains: u32,

    /// Show what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}
