//! The command line: commands, arguments and their help.

use std::sync::LazyLock;

use clap::{ArgAction, Args, Parser, Subcommand};
use coffer::datafile::{Compression, WriteOptions};
use coffer::manifest::DataFormat;
use coffer::store::StoreOptions;

use crate::format::parse_size;

pub mod collection;

static LONG_VERSION: LazyLock<String> = LazyLock::new(|| {
    format!(
        "{} (archive format {})",
        env!("CARGO_PKG_VERSION"),
        coffer::manifest::FORMAT_VERSION
    )
});

static DEFAULT_PART_SIZE: LazyLock<String> =
    LazyLock::new(|| exact_size(WriteOptions::default().part_size));

/// A size in the largest binary unit that divides it: `32MiB`, `1000`.
fn exact_size(bytes: u64) -> String {
    for (shift, unit) in [(40, "TiB"), (30, "GiB"), (20, "MiB"), (10, "KiB")] {
        if bytes > 0 && bytes.is_multiple_of(1u64 << shift) {
            return format!("{}{unit}", bytes >> shift);
        }
    }
    bytes.to_string()
}

fn long_version() -> &'static str {
    LONG_VERSION.as_str()
}

fn default_part_size() -> &'static str {
    DEFAULT_PART_SIZE.as_str()
}

const ABOUT: &str = "Back up, restore and verify SQL databases (SQLite; PostgreSQL exports) as checksummed Parquet archives on disk or S3.";

const LONG_ABOUT: &str = "\
Back up, restore and verify SQL databases (SQLite; PostgreSQL exports) as checksummed Parquet archives on disk or S3.

coffer takes a consistent snapshot of a database and writes it as an archive: \
Parquet data files for each table, a SHA256SUMS list, and a manifest.json that is \
written last, so an interrupted backup never looks like a complete one.

An archive location is a directory path (or file://PATH), or s3://BUCKET/PREFIX for \
AWS S3 and S3-compatible services such as MinIO. A database is a SQLite file path \
(or sqlite://PATH), or a PostgreSQL URL postgres://USER@HOST:PORT/DB, with libpq's \
PGHOST, PGUSER, PGPASSWORD... and ~/.pgpass as defaults; PostgreSQL databases can be \
exported so far, not yet backed up or restored.";

const EXAMPLES: &str = "\
Examples:
  coffer backup app.db backups/app-2025-06-01
  coffer ls backups/app-2025-06-01
  coffer verify backups/app-2025-06-01
  coffer restore backups/app-2025-06-01 restored.db
  coffer backup app.db s3://my-bucket/app/2025-06-01
  coffer export app.db s3://my-bucket/exports/app --format csv
  coffer import s3://my-bucket/exports/app copy.db";

const LONG_EXAMPLES: &str = "\
Examples:
  coffer backup app.db backups/app-2025-06-01
  coffer ls backups/app-2025-06-01
  coffer verify backups/app-2025-06-01
  coffer restore backups/app-2025-06-01 restored.db
  coffer backup app.db s3://my-bucket/app/2025-06-01
  coffer export app.db s3://my-bucket/exports/app --format csv
  coffer import s3://my-bucket/exports/app copy.db

Exit status:
  0    success
  1    the command failed, or `verify` found damage
  2    the command line is wrong
  130  interrupted by Ctrl-C (143 by SIGTERM, 129 by SIGHUP), after cleaning up

Environment:
  AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_REGION,
  AWS_ENDPOINT_URL, AWS_ALLOW_HTTP   S3 access, when the flags are not given
  COFFER_LOG                         log filter for --verbose output (e.g. coffer=trace)

Run `coffer help <COMMAND>` for the details of a command.";

/// The `coffer` command line.
#[derive(Debug, Parser)]
#[command(
    name = "coffer",
    version,
    long_version = long_version(),
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXAMPLES,
    after_long_help = LONG_EXAMPLES,
    arg_required_else_help = true,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub output: OutputArgs,

    #[command(flatten)]
    pub s3: S3Args,

    #[command(flatten)]
    pub keys: KeyArgs,
}

/// The keys that open encrypted archives (every command that reads one).
#[derive(Debug, Args)]
#[command(next_help_heading = "Encryption")]
pub struct KeyArgs {
    /// An age identity file (as `age-keygen` writes it) that opens encrypted
    /// archives; repeat for more.
    ///
    /// Needed to read (restore, import, ls, verify the contents of) an archive
    /// or collection encrypted with --encrypt-to. The file should be readable
    /// by its owner only; coffer warns otherwise.
    #[arg(
        long = "identity",
        short = 'i',
        global = true,
        value_name = "FILE",
        env = "COFFER_IDENTITY"
    )]
    pub identities: Vec<std::path::PathBuf>,

    /// A file whose first line is the passphrase (or set COFFER_PASSPHRASE).
    ///
    /// Opens archives encrypted with a passphrase; `backup`, `export` and
    /// `collection create` encrypt with it when no --encrypt-to is given.
    #[arg(long, global = true, value_name = "FILE")]
    pub passphrase_file: Option<std::path::PathBuf>,
}

/// What new archives are encrypted to (`backup`, `export`, `collection
/// create`, `rekey`).
#[derive(Debug, Args, Clone, Default)]
#[command(next_help_heading = "Encryption")]
pub struct EncryptArgs {
    /// Encrypt to this age public key (age1…, as `age-keygen -y` prints it);
    /// repeat for more recipients.
    ///
    /// Data, schema, names and counts are all encrypted; only the recipients,
    /// the kind and time of the backup and the checksums of the stored files
    /// stay readable. Whoever holds one of the recipients' identities opens it
    /// (with coffer --identity, or with the age tool alone: docs/FORMAT.md).
    /// Writing needs no secret.
    #[arg(long = "encrypt-to", value_name = "RECIPIENT")]
    pub recipients: Vec<String>,

    /// Encrypt to every age public key in this file (one per line, # comments).
    #[arg(long = "encrypt-to-file", value_name = "FILE")]
    pub recipient_files: Vec<std::path::PathBuf>,
}

/// Options that shape what coffer prints.
#[derive(Debug, Args)]
#[command(next_help_heading = "Output")]
pub struct OutputArgs {
    /// Print the result as one JSON object on stdout instead of a summary.
    ///
    /// No progress bar is shown. Errors still go to stderr as `error: ...`.
    #[arg(long, global = true)]
    pub json: bool,

    /// Print nothing on success: no progress bar, no summary.
    ///
    /// Errors, the damage `verify` finds and the listing of `ls` are still printed.
    #[arg(short, long, global = true, conflicts_with = "json")]
    pub quiet: bool,

    /// Show what coffer is doing on stderr; repeat for more (-vv).
    ///
    /// Also prints the chain of causes of an error. COFFER_LOG, if set, is used
    /// as the log filter instead (e.g. COFFER_LOG=coffer=trace,object_store=debug).
    #[arg(short, long, global = true, action = ArgAction::Count)]
    pub verbose: u8,
}

/// How to reach S3. Every option falls back to the usual AWS_* variable.
#[derive(Debug, Args)]
#[command(next_help_heading = "S3 storage (for s3:// locations)")]
pub struct S3Args {
    /// Endpoint of an S3-compatible service, e.g. http://127.0.0.1:9000 (MinIO).
    ///
    /// Leave it out for AWS S3.
    #[arg(
        long,
        global = true,
        hide_short_help = true,
        value_name = "URL",
        env = "AWS_ENDPOINT_URL",
        hide_env_values = true
    )]
    pub s3_endpoint: Option<String>,

    /// Region of the bucket (us-east-1 when not given).
    #[arg(
        long,
        global = true,
        hide_short_help = true,
        value_name = "REGION",
        env = "AWS_REGION",
        hide_env_values = true
    )]
    pub s3_region: Option<String>,

    /// Access key id.
    #[arg(
        long,
        global = true,
        hide_short_help = true,
        value_name = "KEY",
        env = "AWS_ACCESS_KEY_ID",
        hide_env_values = true
    )]
    pub access_key: Option<String>,

    /// Secret access key (better set in the environment).
    ///
    /// Prefer AWS_SECRET_ACCESS_KEY: command-line arguments are visible to other
    /// users of the machine. The key is never printed.
    #[arg(
        long,
        global = true,
        hide_short_help = true,
        value_name = "SECRET",
        env = "AWS_SECRET_ACCESS_KEY",
        hide_env_values = true
    )]
    pub secret_key: Option<String>,

    /// Use virtual-hosted-style requests (https://BUCKET.host/KEY) instead of
    /// path style (https://host/BUCKET/KEY).
    #[arg(long, global = true, hide_short_help = true)]
    pub s3_virtual_hosted: bool,

    /// Allow a plain http:// endpoint (implied when --s3-endpoint starts with http://).
    #[arg(long, global = true, hide_short_help = true)]
    pub allow_http: bool,
}

impl S3Args {
    /// The library's options; unset fields fall back to AWS_* there.
    pub fn store_options(&self) -> StoreOptions {
        StoreOptions {
            s3_endpoint: self.s3_endpoint.clone(),
            s3_region: self.s3_region.clone(),
            access_key: self.access_key.clone(),
            secret_key: self.secret_key.clone(),
            virtual_hosted: self.s3_virtual_hosted,
            allow_http: self.allow_http,
            ..StoreOptions::default()
        }
    }
}

/// The commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    #[command(
        about = "Back up a database into a new archive",
        long_about = "\
Take a consistent snapshot of the database DB and write it as a new archive at DEST.

The snapshot is a single moment of the database, even while other connections \
write to it. DEST must be a new or empty location; an existing archive is never \
overwritten (the leftovers of an interrupted backup are cleaned up). The archive \
exists only once the backup succeeds: a failed or interrupted (Ctrl-C) backup \
writes no manifest, so it cannot be mistaken for a complete one, and removes the \
files it wrote. While a backup writes DEST it holds a lock there, and a second \
backup into DEST is refused.",
        after_help = "\
Examples:
  coffer backup app.db backups/app-2025-06-01
  coffer backup sqlite:///var/lib/app/app.db s3://my-bucket/app/2025-06-01
  coffer backup app.db backups/app --compression zstd-9 --part-size 128MiB
  coffer backup app.db s3://backups/app --s3-endpoint http://127.0.0.1:9000
  coffer backup app.db s3://backups/app --encrypt-to age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"
    )]
    Backup(BackupArgs),

    #[command(
        about = "Restore a database from an archive",
        long_about = "\
Rebuild the database DB from the archive at SRC.

Every data file is checked against its size and SHA-256 as it is read. The \
database is built beside DB and moved into place only once it is complete and \
checked, so a failed or interrupted restore leaves DB as it was. An existing, \
non-empty DB is replaced only with --force; an existing database is then \
written in through SQLite's locking, so other processes that have it open \
lose no commit (a lock held more than 10 s makes the restore refuse).

Into PostgreSQL (DB a postgres:// URL), the database is created under a \
temporary name on that server, loaded over parallel connections, indexed, \
analyzed and checked, then renamed to DB; --force replaces an existing DB \
that no one is connected to. Owners and grants are those of the source \
unless --no-owner or --no-privileges is given.",
        after_help = "\
Examples:
  coffer restore backups/app-2025-06-01 restored.db
  coffer restore s3://my-bucket/app/2025-06-01 /var/lib/app/app.db --force
  coffer restore backups/shop postgres://app@db.internal/shop_copy --no-owner
  coffer restore backups/app users.db --table users --table accounts"
    )]
    Restore(RestoreArgs),

    #[command(
        about = "Check that every file of an archive is intact",
        long_about = "\
Re-read every file of the archive at SRC and check its size and SHA-256 against \
the manifest, and check that SHA256SUMS agrees with the manifest.

Each damaged file is listed with its problem (missing, wrong size or wrong \
checksum). The exit status is 0 only when everything matches and 1 otherwise, \
so verify fits scripts and scheduled jobs. The database is not needed.",
        after_help = "\
Examples:
  coffer verify backups/app-2025-06-01
  coffer verify s3://my-bucket/app/2025-06-01 --json"
    )]
    Verify(VerifyArgs),

    #[command(
        visible_alias = "list",
        about = "Show what an archive holds",
        long_about = "\
Show what the archive at SRC holds: its kind, when it was made, the source \
database and engine, and each table with its kind, rows, size and number of data \
files.

Only the manifest is read, so this is fast even for large archives on S3; the \
data files are not checked (use `coffer verify` for that).",
        after_help = "\
Examples:
  coffer ls backups/app-2025-06-01
  coffer ls s3://my-bucket/app/2025-06-01 --json"
    )]
    Ls(LsArgs),

    #[command(
        about = "Export tables as a portable archive (Parquet or CSV) for other tools",
        long_about = "\
Take one consistent snapshot of the chosen tables of DB and write it at DEST as \
an export: plain Parquet (or CSV) files that DuckDB, pyarrow, Spark or a \
spreadsheet read as they are, with the typed schema, row counts and checksums in \
manifest.json (written last, so an interrupted export is never mistaken for a \
complete one).

All tables are exported by default (not SQLite's own sqlite_sequence and \
sqlite_stat* tables); --table names some, --exclude leaves out those whose whole \
name matches a regular expression. Columns declared DATE, DATETIME/TIMESTAMP or \
DECIMAL(P,S) are written as Parquet DATE, TIMESTAMP and DECIMAL when every value \
converts exactly, and keep their plain type otherwise. Every value a column's \
type can hold is in the column (the integer 18 in a NUMERIC column as 18.0); a \
side file keeps storage classes and the rare values no column type can show \
(SQLite lets any column hold anything), so `coffer import` gives them back \
exactly. The files have exactly the tables' columns: --keep-rowid adds the hidden \
rowid of tables without an INTEGER PRIMARY KEY, so that an import keeps it. CSV \
files are plain .csv (NULL an empty field, empty text \"\", bytes \\x hex) unless \
--compression zstd asks for .csv.zst.",
        after_help = "\
Examples:
  coffer export app.db s3://my-bucket/exports/app-2025-06-01
  coffer export app.db exports/orders --table orders --table customers
  coffer export app.db exports/app --exclude 'tmp_.*' --format csv
  coffer export app.db s3://lake/app --compression zstd-6 --part-size 128MiB"
    )]
    Export(ExportArgs),

    #[command(
        about = "Import the tables of an export (or a backup) into a database",
        long_about = "\
Create the tables of the archive at SRC, with their indexes, in the database DB \
(created if it does not exist) and load their rows. Every data file is checked \
against its size and SHA-256 on the way in.

The import is all or nothing: an existing DB is changed in one transaction and a \
new one is built beside its final name, so a failed or interrupted import leaves \
DB as it was. A table that already exists in DB stops the import before anything \
is written (--mode create, the default); --mode append adds the rows to it, \
--mode replace drops it and creates it anew.",
        after_help = "\
Examples:
  coffer import s3://my-bucket/exports/app-2025-06-01 copy.db
  coffer import exports/app analytics.db --table orders --mode append
  coffer import exports/app app.db --mode replace"
    )]
    Import(ImportArgs),

    #[command(
        about = "Make other keys open an encrypted archive or collection, without re-encrypting data",
        long_about = "\
Make the recipients given (--encrypt-to, --encrypt-to-file or --new-passphrase-file) \
the only ones that open the encrypted archive at LOCATION, or every encrypted \
collection of the repository at LOCATION.

The current key is needed to open it (--identity or the passphrase). Only the \
small key file is rewritten, never a data file: each archive's data is encrypted \
to its own data key, and the key file holds that key encrypted to the recipients. \
An identity no longer among the recipients cannot open the archive any more \
(unless its holder kept a copy of the old key file or the data key).",
        after_help = "\
Examples:
  coffer rekey backups/app -i old.key --encrypt-to age1new...
  coffer rekey s3://bucket/app-repo -i old.key --encrypt-to-file team.pub
  coffer rekey backups/app --passphrase-file old.txt --new-passphrase-file new.txt"
    )]
    Rekey(RekeyArgs),

    #[command(
        subcommand,
        about = "Backup collections: named sets of tables, full and incremental backups",
        long_about = "\
Backup collections: named sets of tables backed up as chains of one full backup \
plus incrementals that hold only what changed, restorable to any backup point.

`create` sets up change capture in the database; `backup` takes a full or an \
incremental backup; `restore` rebuilds the tables as of any backup from the \
repository alone; `list`, `show`, `prune` and `drop` look after them."
    )]
    Collection(collection::CollectionCommand),
}

/// How data files are written: the flags of every command that writes an
/// archive.
#[derive(Debug, Args)]
pub struct WriteArgs {
    /// Size at which a table's data file is closed and the next one begun.
    ///
    /// A number of bytes with an optional unit: K, M, G (or KiB, MiB, GiB) are
    /// powers of 1024, kB, MB, GB powers of 1000.
    #[arg(long, value_name = "SIZE", default_value = default_part_size(), value_parser = parse_size)]
    pub part_size: u64,

    /// Compression of the data files: zstd, zstd-N (level N from 1 to 22) or
    /// none. Parquet pages are zstd by default; CSV files are plain `.csv`
    /// unless this asks for `.csv.zst`.
    #[arg(long, value_name = "CODEC", value_parser = parse_compression)]
    pub compression: Option<Compression>,

    /// Threads that encode data files in parallel.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub encoders: u16,
}

impl WriteArgs {
    /// The write options for data files of `format`.
    pub fn options(&self, format: DataFormat) -> WriteOptions {
        WriteOptions {
            part_size: self.part_size,
            // CSV is plain text unless compression is asked for, so that
            // spreadsheets and `head` open it.
            compression: self.compression.unwrap_or(match format {
                DataFormat::Parquet => Compression::default(),
                DataFormat::Csv => Compression::None,
            }),
            data_format: format,
        }
    }

    /// The encoder threads.
    pub fn encoders(&self) -> usize {
        usize::from(self.encoders)
    }
}

/// Parallel readers by default: one per core, at most 8 (each holds a
/// connection and a batch or two in memory).
pub fn default_scanners() -> u16 {
    std::thread::available_parallelism()
        .map(|n| n.get().min(8) as u16)
        .unwrap_or(2)
}

/// Arguments of `coffer backup`.
#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The database to back up: a file path or sqlite://PATH.
    #[arg(value_name = "DB")]
    pub db: String,

    /// Where to write the archive: a directory, file://PATH or s3://BUCKET/PREFIX.
    #[arg(value_name = "DEST")]
    pub dest: String,

    #[command(flatten)]
    pub write: WriteArgs,

    /// Back up only this table; repeat for more. All tables by default.
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,

    /// Connections that read tables in parallel, all at the same moment
    /// (1 reads every table on one connection; a large PostgreSQL table is
    /// split among them); by default one per core, at most 8.
    #[arg(long, visible_alias = "jobs", value_name = "N", default_value_t = default_scanners(), value_parser = clap::value_parser!(u16).range(1..=64))]
    pub scanners: u16,

    #[command(flatten)]
    pub encrypt: EncryptArgs,
}

/// Arguments of `coffer rekey`.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// An encrypted archive, or a repository of encrypted collections.
    #[arg(value_name = "LOCATION")]
    pub location: String,

    /// In a repository: only this collection; repeat for more. All its
    /// encrypted collections by default.
    #[arg(long = "collection", value_name = "NAME")]
    pub collections: Vec<String>,

    #[command(flatten)]
    pub encrypt: EncryptArgs,

    /// Make this passphrase (first line of FILE) the one that opens it,
    /// instead of recipients.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["recipients", "recipient_files"])]
    pub new_passphrase_file: Option<std::path::PathBuf>,
}

/// Arguments of `coffer restore`.
#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The archive to restore: a directory, file://PATH or s3://BUCKET/PREFIX.
    #[arg(value_name = "SRC")]
    pub src: String,

    /// The database to create: a file path, sqlite://PATH or
    /// postgres://USER@HOST:PORT/DATABASE.
    #[arg(value_name = "DB")]
    pub db: String,

    /// Replace DB if it exists and is not empty.
    #[arg(long, short)]
    pub force: bool,

    /// Restore only this table; repeat for more. All tables by default.
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,

    /// When the database uses collation sequences that its application
    /// defines (which coffer cannot have), restore everything else instead
    /// of refusing; the tables and indexes that need them are left out and
    /// listed.
    #[arg(long)]
    pub skip_missing_collations: bool,

    /// PostgreSQL: leave out the source's owners; whoever restores owns
    /// every object (as pg_restore --no-owner).
    #[arg(long)]
    pub no_owner: bool,

    /// PostgreSQL: leave out the source's grants and revokes of privileges
    /// (as pg_restore --no-privileges).
    #[arg(long)]
    pub no_privileges: bool,
}

/// Arguments of `coffer verify`.
#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The archive to check: a directory, file://PATH or s3://BUCKET/PREFIX.
    #[arg(value_name = "SRC")]
    pub src: String,
}

/// Arguments of `coffer ls`.
#[derive(Debug, Args)]
pub struct LsArgs {
    /// The archive to show: a directory, file://PATH or s3://BUCKET/PREFIX.
    #[arg(value_name = "SRC")]
    pub src: String,
}

/// The data file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FormatArg {
    /// Apache Parquet (zstd-compressed pages).
    Parquet,
    /// RFC 4180 CSV with a header row (.csv, or .csv.zst with --compression zstd).
    Csv,
}

/// Arguments of `coffer export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The database to export from: a file path, sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(value_name = "DB")]
    pub db: String,

    /// Where to write the export: a directory, file://PATH or s3://BUCKET/PREFIX.
    #[arg(value_name = "DEST")]
    pub dest: String,

    /// Export only this table; repeat for more. All tables by default.
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,

    #[command(flatten)]
    pub encrypt: EncryptArgs,

    /// Leave out the tables whose whole name matches this regular expression;
    /// repeat for more (e.g. --exclude 'tmp_.*').
    #[arg(long = "exclude", value_name = "REGEX", value_parser = parse_regex)]
    pub exclude: Vec<regex::Regex>,

    /// PostgreSQL: export only the tables of this schema; repeat for more
    /// (tables of `public` are named without it).
    #[arg(long = "schema", value_name = "NAME")]
    pub schemas: Vec<String>,

    /// Format of the data files.
    #[arg(long, value_enum, default_value = "parquet")]
    pub format: FormatArg,

    #[command(flatten)]
    pub write: WriteArgs,

    /// Keep the hidden rowid of tables without an INTEGER PRIMARY KEY, as a
    /// leading column `__coffer_rowid`, so that an import keeps the rowids.
    /// Without it the files have exactly the table's columns.
    #[arg(long = "keep-rowid")]
    pub keep_hidden_key: bool,

    /// Connections that read tables in parallel, all at the same moment
    /// (1 reads every table on one connection; a large PostgreSQL table is
    /// split among them); by default one per core, at most 8.
    #[arg(long, visible_alias = "jobs", value_name = "N", default_value_t = default_scanners(), value_parser = clap::value_parser!(u16).range(1..=64))]
    pub scanners: u16,
}

/// What an import does with a table that exists in the database.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ModeArg {
    /// Stop, naming the table, before anything is written.
    Create,
    /// Add the archive's rows to the existing table.
    Append,
    /// Drop the existing table and create it anew from the archive.
    Replace,
}

/// Arguments of `coffer import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// The archive to import: a directory, file://PATH or s3://BUCKET/PREFIX.
    #[arg(value_name = "SRC")]
    pub src: String,

    /// The database to import into (created if absent): a file path,
    /// sqlite://PATH or postgres://USER@HOST:PORT/DATABASE.
    #[arg(value_name = "DB")]
    pub db: String,

    /// Import only this table; repeat for more. All tables by default.
    #[arg(long = "table", value_name = "NAME")]
    pub tables: Vec<String>,

    /// What to do with a table that already exists in DB.
    #[arg(long, value_enum, default_value = "create")]
    pub mode: ModeArg,

    /// Store a value that DB's engine cannot hold exactly in its nearest
    /// form (a NUL dropped from text for PostgreSQL, a numeric NaN as NULL
    /// for SQLite, ...; see docs/FORMAT.md), counted in the summary,
    /// instead of failing the import.
    #[arg(long)]
    pub coerce: bool,
}

fn parse_regex(s: &str) -> Result<regex::Regex, String> {
    regex::Regex::new(s).map_err(|e| format!("not a valid regular expression: {e}"))
}

fn parse_compression(s: &str) -> Result<Compression, String> {
    s.parse::<Compression>().map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn exact_sizes() {
        assert_eq!(exact_size(32 << 20), "32MiB");
        assert_eq!(exact_size(3 << 30), "3GiB");
        assert_eq!(exact_size(1000), "1000");
        assert_eq!(exact_size(2048), "2KiB");
    }

    #[test]
    fn the_default_part_size_parses_back() {
        assert_eq!(
            parse_size(default_part_size()).unwrap(),
            WriteOptions::default().part_size
        );
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "coffer",
            "backup",
            "app.db",
            "out",
            "--part-size",
            "64MiB",
            "--compression",
            "zstd-3",
            "--json",
        ])
        .unwrap();
        let Command::Backup(b) = cli.command else {
            panic!("not backup")
        };
        assert_eq!(b.write.part_size, 64 << 20);
        assert_eq!(b.write.compression, Some(Compression::Zstd(3)));
        assert!(cli.output.json);
        assert!(
            Cli::try_parse_from(["coffer", "backup", "a", "b", "--compression", "lz4"]).is_err()
        );
    }
}
