//! The engine conformance suite on the PostgreSQL engine, on the test
//! process's throwaway cluster: every check of [`coffer_testkit::engines`],
//! each as a test of its own so that they run in parallel and fail by name
//! (those of change capture say they are skipped: the engine has none yet).

use coffer_testkit::engines;
use coffer_testkit::pg_fixture::PgFixture;

macro_rules! checks {
    ($($name:ident),* $(,)?) => {
        /// A new check of the suite needs a test here too.
        #[test]
        fn every_check_of_the_suite_has_a_test() {
            let here = [$(stringify!($name)),*];
            let suite: Vec<&str> = engines::CHECKS.iter().map(|(n, _)| *n).collect();
            assert_eq!(here.as_slice(), suite.as_slice());
        }
        $(
            #[tokio::test(flavor = "multi_thread")]
            async fn $name() {
                engines::$name(&PgFixture::new()).await;
            }
        )*
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
