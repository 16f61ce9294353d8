//! Run the in-process test S3 server as a process, for benchmarks and
//! manual tests: `cargo run -p coffer-testkit --example s3_server -- BUCKET...`
//!
//! Prints one line of JSON — `{"endpoint", "access_key", "secret_key",
//! "root"}` — once the server accepts connections, creates the buckets named
//! on the command line, and serves until its standard input is closed (or
//! it is killed). Its data is deleted when it stops.

use std::io::{Read, Write};

fn main() {
    let server = coffer_testkit::S3Server::start();
    for bucket in std::env::args().skip(1) {
        server.create_bucket(&bucket);
    }
    let line = format!(
        "{{\"endpoint\":\"{}\",\"access_key\":\"{}\",\"secret_key\":\"{}\",\"root\":\"{}\"}}",
        server.endpoint,
        server.access_key,
        server.secret_key,
        server.root().display()
    );
    println!("{line}");
    let _ = std::io::stdout().flush();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}
