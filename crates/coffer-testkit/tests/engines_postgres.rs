//! The engine conformance suite on the PostgreSQL engine, on the test
//! process's throwaway cluster: every check of [`coffer_testkit::engines`],
//! each as a test of its own so that they run in parallel and fail by name
//! (those of change capture say they are skipped: the engine has none yet).

use coffer_testkit::pg_fixture::PgFixture;

coffer_testkit::engine_suite!(PgFixture::new());
