//! coffer: backup and recovery for SQL databases.
//!
//! This crate holds everything that is not specific to one database engine:
//! the [archive format](manifest) (Parquet data files, `SHA256SUMS`, and a
//! `manifest.json` written last), the [storage layer](store) over
//! `object_store`, the [engine interface](engine) and the operations
//! ([backup](ops::backup), [restore](ops::restore), [verify](ops::verify)).
//!
//! ```no_run
//! # async fn run(engine: std::sync::Arc<dyn coffer::engine::Engine>) -> coffer::Result<()> {
//! use coffer::{ops, progress::Silent, store::{Store, StoreOptions}};
//! let db = engine.resolve("app.db")?;
//! let dest = Store::create("backups/app", &StoreOptions::default())?;
//! let report = ops::backup::backup(engine, &db, &dest, Default::default(),
//!     std::sync::Arc::new(Silent)).await?;
//! println!("{} rows", report.manifest.total_rows());
//! # Ok(()) }
//! ```
#![warn(missing_docs)]

pub mod archive;
pub mod codec;
pub mod crypt;
pub mod datafile;
pub mod engine;
pub mod error;
pub mod lock;
pub mod manifest;
pub mod ops;
pub mod progress;
pub mod store;
pub mod upload;

pub use error::{Error, ErrorKind, Result};
