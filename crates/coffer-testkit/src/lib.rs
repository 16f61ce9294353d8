//! Test support for coffer.
//!
//! * [`nasty`] — fixture databases: a deliberately nasty SQLite database that
//!   exercises everything a lossless backup must keep, and a tidy small one;
//! * [`image`] — an engine-neutral image of a database (settings, schema
//!   objects, tables of exact values) with a diff and a digest;
//! * [`sqlite`] — the SQLite reader of images;
//! * [`compare`] — exact, storage-class-aware comparison of two SQLite
//!   databases and a digest over the same content, on top of the two;
//! * [`pg`] — throwaway PostgreSQL clusters, one per test process;
//! * [`python`] — pyarrow and DuckDB for the tests of what other tools read;
//! * [`s3`] — an in-process S3 server (s3s-fs over a temporary directory);
//! * [`fixture`] — engine fixtures: databases from a neutral description,
//!   read back as images, changed at random ([`fixture::SqliteFixture`]);
//! * [`engines`] — the engine conformance suite every engine must pass;
//! * [`pg_fixture`] — the PostgreSQL engine's fixture for that suite;
//! * [`conformance`] — the storage conformance suite every
//!   [`Store`](coffer::store::Store) backend must pass;
//! * [`stores`] — object stores that misbehave as real services do: one
//!   that ignores create-only writes, one that injects faults and stalls.
#![warn(missing_docs)]

pub mod compare;
pub mod conformance;
pub mod engines;
pub mod fixture;
pub mod image;
pub mod keys;
pub mod nasty;
pub mod pg;
pub mod pg_fixture;
pub mod python;
pub mod s3;
pub mod sqlite;
pub mod stores;

pub use compare::{assert_same_database, compare_databases, database_digest};
pub use nasty::{create_nasty_db, create_small_db};
pub use s3::S3Server;
