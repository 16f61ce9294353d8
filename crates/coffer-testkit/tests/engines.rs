//! The engine conformance suite on the SQLite engine: every check of
//! [`coffer_testkit::engines`], each as a test of its own so that they run
//! in parallel and fail by name.

use coffer_testkit::fixture::SqliteFixture;

coffer_testkit::engine_suite!(SqliteFixture::new());
