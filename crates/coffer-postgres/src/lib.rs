//! The PostgreSQL engine of coffer ([`engine`]) and its building blocks:
//!
//! * [`address`] — `postgres://` URLs with libpq's environment and password
//!   file as defaults; a display form without credentials;
//! * [`connect`] — connections over TCP (TLS by rustls) or a Unix socket,
//!   one clear sentence for every way connecting fails;
//! * [`snapshot`] — one exported snapshot read by many connections, its
//!   moment (time and WAL position), tables split into ctid ranges;
//! * [`catalog`] — tables (partitioned, inherited, unlogged), columns,
//!   primary keys, privileges; sequences and their state;
//! * [`copy`] — a streaming reader of binary `COPY` output;
//! * [`decode`] — values of the common types from their binary form;
//! * [`schema`] — the schema's DDL in pre-data and post-data sections, from
//!   the server's own `pg_dump`;
//! * [`ddl`] — that DDL as objects, and the check of every statement a
//!   restore runs;
//! * [`load`] — batches as `COPY … FROM STDIN` text;
//! * [`restore`] — a new database built under a temporary name and renamed
//!   into place when complete;
//! * [`import`] — chosen tables into an existing database, in one
//!   transaction;
//! * [`capture`] — change capture for backup collections: triggers that
//!   log changed keys, trimmed by the backup's own snapshot;
//! * [`chain`] — a collection's chain of backups restored in one
//!   transaction.
//!
//! ```no_run
//! let address = coffer_postgres::Address::parse("postgres://app@db.internal/shop")?;
//! let connection = address.connect()?;
//! println!("connected to {address}, server {}", connection.server_version);
//! # Ok::<(), coffer::Error>(())
//! ```
#![warn(missing_docs)]

pub mod address;
pub mod capture;
pub mod catalog;
pub mod chain;
pub mod connect;
pub mod copy;
pub mod ddl;
pub mod decode;
pub mod engine;
pub mod import;
pub mod load;
pub mod restore;
pub mod scan;
pub mod schema;
pub mod snapshot;

pub use address::{Address, Host, SslMode};
pub use connect::Connection;
pub use engine::{PostgresEngine, engine};
