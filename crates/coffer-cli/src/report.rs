//! The JSON objects printed with `--json`, one per command.

use coffer::manifest::{ArchiveKind, DataFormat, Manifest, Source, Table, Tool};
use coffer::ops::verify::{FileStatus, VerifyReport};
use serde::Serialize;

/// Bytes of a table's data files (parts and misfit side files).
pub fn table_bytes(table: &Table) -> u64 {
    table
        .parts
        .iter()
        .map(|p| p.file.size + p.misfits.as_ref().map_or(0, |m| m.size))
        .sum()
}

/// One table as the summaries show it.
#[derive(Debug, Serialize)]
pub struct TableSummary<'a> {
    pub name: &'a str,
    pub kind: &'a str,
    pub rows: u64,
    pub bytes: u64,
    pub parts: usize,
    pub columns: usize,
}

impl<'a> From<&'a Table> for TableSummary<'a> {
    fn from(t: &'a Table) -> Self {
        TableSummary {
            name: &t.name,
            kind: t.kind.as_str(),
            rows: t.rows,
            bytes: table_bytes(t),
            parts: t.parts.len(),
            columns: t.columns.len(),
        }
    }
}

/// `coffer backup --json`.
#[derive(Debug, Serialize)]
pub struct BackupJson<'a> {
    pub ok: bool,
    pub command: &'static str,
    pub archive: &'a str,
    pub kind: ArchiveKind,
    pub created_at: &'a str,
    pub backup_point: &'a str,
    pub source: &'a Source,
    pub tables: Vec<TableSummary<'a>>,
    pub total_rows: u64,
    pub total_bytes: u64,
    pub files: usize,
    pub seconds: f64,
}

/// One restored table.
#[derive(Debug, Serialize)]
pub struct RestoredTable<'a> {
    pub name: &'a str,
    pub rows: u64,
}

/// `coffer restore --json`.
#[derive(Debug, Serialize)]
pub struct RestoreJson<'a> {
    pub ok: bool,
    pub command: &'static str,
    pub archive: &'a str,
    pub database: &'a str,
    pub source: &'a Source,
    pub backup_point: &'a str,
    pub tables: Vec<RestoredTable<'a>>,
    pub rows: u64,
    pub bytes: u64,
    pub seconds: f64,
    /// Objects left out (`--skip-missing-collations`): `{kind, name, reason}`.
    pub skipped: &'a [coffer::engine::Skipped],
}

/// One file in `coffer verify --json`.
#[derive(Debug, Serialize)]
pub struct FileJson<'a> {
    pub path: &'a str,
    /// `ok`, `missing`, `wrong_size` or `wrong_checksum`.
    pub status: &'static str,
    /// The size the manifest gives.
    pub size: u64,
    /// The size found, for `wrong_size`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actual_size: Option<u64>,
}

/// `coffer verify --json`.
#[derive(Debug, Serialize)]
pub struct VerifyJson<'a> {
    pub ok: bool,
    pub command: &'static str,
    pub archive: &'a str,
    pub files: Vec<FileJson<'a>>,
    pub sums_match: bool,
    pub checked_files: usize,
    pub damaged_files: usize,
    pub total_bytes: u64,
    /// Whether the archive is encrypted.
    pub encrypted: bool,
    /// Whether the files' contents were checked (an encrypted archive
    /// verified without a key: only its stored files' checksums).
    pub contents_checked: bool,
}

/// `coffer ls --json` of an encrypted archive, without a key.
#[derive(Debug, Serialize)]
pub struct EncryptedLsJson<'a> {
    pub ok: bool,
    pub command: &'static str,
    pub archive: &'a str,
    pub encrypted: bool,
    pub encryption: &'a coffer::crypt::Encryption,
    pub kind: ArchiveKind,
    pub created_at: &'a str,
    pub backup_point: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<&'a str>,
    pub stored_files: usize,
    pub stored_bytes: u64,
}

impl<'a> EncryptedLsJson<'a> {
    pub fn new(archive: &'a str, e: &'a coffer::crypt::Envelope) -> Self {
        EncryptedLsJson {
            ok: true,
            command: "ls",
            archive,
            encrypted: true,
            encryption: &e.encryption,
            kind: e.kind,
            created_at: &e.created_at,
            backup_point: &e.backup_point,
            parent: e.parent.as_deref(),
            stored_files: e.files.len(),
            stored_bytes: e.files.iter().map(|f| f.size).sum(),
        }
    }
}

/// The name of a status in JSON.
pub fn status_name(status: &FileStatus) -> &'static str {
    match status {
        FileStatus::Ok => "ok",
        FileStatus::Missing => "missing",
        FileStatus::WrongSize { .. } => "wrong_size",
        FileStatus::WrongChecksum => "wrong_checksum",
        FileStatus::WrongContents => "wrong_contents",
    }
}

impl<'a> VerifyJson<'a> {
    pub fn new(archive: &'a str, report: &'a VerifyReport) -> Self {
        let files: Vec<FileJson<'a>> = report
            .files
            .iter()
            .map(|f| FileJson {
                path: &f.path,
                status: status_name(&f.status),
                size: f.size,
                actual_size: match f.status {
                    FileStatus::WrongSize { actual, .. } => Some(actual),
                    _ => None,
                },
            })
            .collect();
        VerifyJson {
            ok: report.is_ok(),
            command: "verify",
            archive,
            checked_files: files.len(),
            damaged_files: files.iter().filter(|f| f.status != "ok").count(),
            files,
            sums_match: report.sums_match,
            total_bytes: report.bytes,
            encrypted: report.encryption.is_some(),
            contents_checked: report.contents_checked(),
        }
    }
}

/// `coffer ls --json`.
#[derive(Debug, Serialize)]
pub struct LsJson<'a> {
    pub ok: bool,
    pub command: &'static str,
    pub archive: &'a str,
    pub format: &'a str,
    pub format_version: u32,
    pub tool: &'a Tool,
    pub kind: ArchiveKind,
    pub created_at: &'a str,
    pub backup_point: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<&'a str>,
    pub source: &'a Source,
    pub data_format: DataFormat,
    /// Schema objects by type (`table`, `index`, `view`, `trigger`).
    pub objects: std::collections::BTreeMap<&'a str, usize>,
    pub tables: Vec<TableSummary<'a>>,
    pub total_rows: u64,
    pub total_bytes: u64,
}

impl<'a> LsJson<'a> {
    pub fn new(archive: &'a str, m: &'a Manifest) -> Self {
        LsJson {
            ok: true,
            command: "ls",
            archive,
            format: &m.format,
            format_version: m.format_version,
            tool: &m.tool,
            kind: m.kind,
            created_at: &m.created_at,
            backup_point: &m.backup_point,
            parent: m.parent.as_deref(),
            source: &m.source,
            data_format: m.data_format,
            objects: object_counts(m),
            tables: m.tables.iter().map(TableSummary::from).collect(),
            total_rows: m.total_rows(),
            total_bytes: m.total_bytes(),
        }
    }
}

/// Schema objects of the manifest counted by type.
pub fn object_counts(m: &Manifest) -> std::collections::BTreeMap<&str, usize> {
    let mut counts = std::collections::BTreeMap::new();
    for o in &m.objects {
        *counts.entry(o.kind.as_str()).or_insert(0) += 1;
    }
    counts
}
