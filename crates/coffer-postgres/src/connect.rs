//! Connecting to a PostgreSQL server, with one clear sentence for each way
//! it goes wrong.
//!
//! TLS is rustls with the `ring` provider. libpq's `sslmode` is followed:
//! `disable` never uses TLS; `allow` and `prefer` use it when the server
//! offers it without checking the certificate; `require` insists on TLS and
//! checks the certificate's chain only when a root certificate is given (or
//! `~/.postgresql/root.crt` exists); `verify-ca` checks the chain;
//! `verify-full` checks the chain and that the certificate names the host. As
//! with libpq, TLS is never used over a Unix-domain socket.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use coffer::{Error, ErrorKind, Result};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::address::{Address, Host, SslMode};

/// The oldest server coffer supports, as `server_version_num`.
///
/// PostgreSQL 12 removed `WITH OIDS` tables and added generated columns and
/// table access methods; the catalog queries and the data path are written
/// for what 12 and later have. Every release older than 12 has been out of
/// community support since November 2023.
pub const OLDEST_SUPPORTED: u32 = 120000;

/// An open connection, with what we learnt about the server.
pub struct Connection {
    /// The client (blocking).
    pub client: postgres::Client,
    /// `server_version_num`, e.g. 150004.
    pub server_version: u32,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("server_version", &self.server_version)
            .finish_non_exhaustive()
    }
}

/// Refuse a server older than [`OLDEST_SUPPORTED`], naming it.
pub fn check_server_version(address: &Address, version_num: u32, version: &str) -> Result<()> {
    if version_num < OLDEST_SUPPORTED {
        return Err(Error::new(
            ErrorKind::Engine,
            format!(
                "the PostgreSQL server at {} runs version {version}, older than 12, the oldest coffer supports: upgrade it, or use that version's pg_dump",
                address.server()
            ),
        ));
    }
    Ok(())
}

impl Address {
    /// Connect, check the server's version, and set the session up for
    /// coffer (UTC, ISO dates, all float digits).
    pub fn connect(&self) -> Result<Connection> {
        let mut config = postgres::Config::new();
        config
            .user(self.user())
            .dbname(self.dbname())
            .port(self.port())
            .application_name(self.application_name());
        if let Some(timeout) = self.connect_timeout() {
            config.connect_timeout(timeout);
        }
        if let Some((password, _)) = self.password() {
            config.password(password.expose());
        }
        let tls_mode = match self.host() {
            Host::Tcp(h) => {
                config.host(h);
                self.sslmode()
            }
            Host::Socket(dir) => {
                config.host_path(dir);
                SslMode::Disable
            }
        };
        config.ssl_mode(match tls_mode {
            SslMode::Disable => postgres::config::SslMode::Disable,
            SslMode::Allow | SslMode::Prefer => postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                postgres::config::SslMode::Require
            }
        });
        let tls = MakeRustlsConnect::new(self.tls_config(tls_mode)?);
        let mut client = config.connect(tls).map_err(|e| connect_error(self, &e))?;
        let row = client
            .query_one(
                "SELECT current_setting('server_version_num')::int4, current_setting('server_version')",
                &[],
            )
            .map_err(|e| query_error(self, "reading the server's version", &e))?;
        let version_num = row.get::<_, i32>(0) as u32;
        let version: String = row.get(1);
        check_server_version(self, version_num, &version)?;
        client
            .batch_execute(
                "SET TimeZone = 'UTC'; SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'iso_8601'; \
                 SET extra_float_digits = 3; SET client_encoding = 'UTF8'",
            )
            .map_err(|e| query_error(self, "setting the session up", &e))?;
        Ok(Connection {
            client,
            server_version: version_num,
        })
    }

    fn tls_config(&self, mode: SslMode) -> Result<rustls::ClientConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::internal(format!("rustls refused its defaults: {e}")))?;
        let root = match (self.sslrootcert(), mode) {
            (Some(path), _) => Some(path.to_path_buf()),
            (None, SslMode::Disable | SslMode::Allow | SslMode::Prefer) => None,
            (None, _) => self.default_root_cert(),
        };
        let verify = match mode {
            SslMode::Disable | SslMode::Allow | SslMode::Prefer => Verify::Nothing,
            SslMode::Require if root.is_none() => Verify::Nothing,
            SslMode::Require | SslMode::VerifyCa => Verify::Chain,
            SslMode::VerifyFull => Verify::Full,
        };
        let verifier: Arc<dyn ServerCertVerifier> = match verify {
            Verify::Nothing => Arc::new(NoVerification(provider)),
            Verify::Chain | Verify::Full => {
                let path = root.ok_or_else(|| {
                    Error::invalid(format!(
                        "sslmode={} for {self} needs a root certificate to check the server's against: \
                         give sslrootcert=FILE (or PGSSLROOTCERT), or put it at ~/.postgresql/root.crt",
                        mode.as_str()
                    ))
                })?;
                let roots = self.read_roots(&path)?;
                let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| {
                        Error::invalid(format!(
                            "root certificate file {} cannot be used ({e}): give a PEM file of CA certificates",
                            path.display()
                        ))
                    })?;
                Arc::new(WebPki {
                    inner,
                    check_name: matches!(verify, Verify::Full),
                })
            }
        };
        Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth())
    }

    fn default_root_cert(&self) -> Option<PathBuf> {
        let home = std::env::var_os("HOME")?;
        let path = Path::new(&home).join(".postgresql/root.crt");
        path.is_file().then_some(path)
    }

    fn read_roots(&self, path: &Path) -> Result<RootCertStore> {
        let bad = |why: String| {
            Error::invalid(format!(
                "root certificate file {} {why}: give a PEM file of CA certificates as sslrootcert",
                path.display()
            ))
        };
        let certs = CertificateDer::pem_file_iter(path)
            .map_err(|e| bad(format!("cannot be read ({e})")))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| bad(format!("is not valid PEM ({e})")))?;
        if certs.is_empty() {
            return Err(bad("holds no certificate".into()));
        }
        let mut roots = RootCertStore::empty();
        for cert in certs {
            roots
                .add(cert)
                .map_err(|e| bad(format!("holds a certificate rustls rejects ({e})")))?;
        }
        Ok(roots)
    }
}

enum Verify {
    Nothing,
    Chain,
    Full,
}

/// `prefer` / `require` without a root certificate: encryption, no identity.
#[derive(Debug)]
struct NoVerification(Arc<CryptoProvider>);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca` (chain only) and `verify-full` (chain and name).
#[derive(Debug)]
struct WebPki {
    inner: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for WebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

fn find_cause<'a, T: std::error::Error + 'static>(
    err: &'a (dyn std::error::Error + 'static),
) -> Option<&'a T> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(t) = e.downcast_ref::<T>() {
            return Some(t);
        }
        // io::Error::source skips the error it wraps; look at it too.
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            if let Some(t) = inner.downcast_ref::<T>() {
                return Some(t);
            }
            if let Some(t) = find_cause::<T>(inner) {
                return Some(t);
            }
        }
        cur = e.source();
    }
    None
}

/// The one sentence for a failed connection attempt.
pub fn connect_error(address: &Address, err: &postgres::Error) -> Error {
    let server = address.server();
    let who = address.to_string();
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        let message = match code {
            // invalid_password
            "28P01" => {
                let source = match address.password() {
                    Some((_, crate::address::PasswordSource::Url)) => "the one in the address",
                    Some((_, crate::address::PasswordSource::Environment)) => "PGPASSWORD",
                    Some((_, crate::address::PasswordSource::File(_))) => {
                        "the one from the password file"
                    }
                    None => "none given",
                };
                return Error::new(
                    ErrorKind::Auth,
                    format!(
                        "the PostgreSQL server at {server} refused the password for user {:?} ({source}): check it, or set PGPASSWORD or ~/.pgpass",
                        address.user()
                    ),
                )
                .with_source(Redacted::of(err));
            }
            // invalid_authorization_specification: pg_hba.conf refuses, or no such role.
            "28000" => {
                return Error::new(
                    ErrorKind::Auth,
                    format!(
                        "the PostgreSQL server at {server} refused user {:?} for database {:?} ({}): check the user name and the server's pg_hba.conf",
                        address.user(),
                        address.dbname(),
                        db.message()
                    ),
                )
                .with_source(Redacted::of(err));
            }
            // invalid_catalog_name
            "3D000" => {
                return Error::not_found(format!(
                    "database {:?} does not exist on the PostgreSQL server at {server}: check the name in {who}, or create it",
                    address.dbname()
                ))
                .with_source(Redacted::of(err));
            }
            // insufficient_privilege (e.g. no CONNECT on the database)
            "42501" => {
                return Error::new(
                    ErrorKind::Auth,
                    format!(
                        "user {:?} may not connect to database {:?} on {server} ({}): grant it CONNECT, or use a role that has it",
                        address.user(),
                        address.dbname(),
                        db.message()
                    ),
                )
                .with_source(Redacted::of(err));
            }
            // too_many_connections, cannot_connect_now (starting up / shutting down)
            "53300" | "57P03" => format!(
                "the PostgreSQL server at {server} does not accept connections now ({}): try again later",
                db.message()
            ),
            _ => format!(
                "connecting to {who} failed: {} (SQLSTATE {code})",
                db.message()
            ),
        };
        return Error::new(ErrorKind::Engine, message).with_source(Redacted::of(err));
    }
    let text = Redacted::of(err).0;
    if let Some(tls) = find_cause::<rustls::Error>(err) {
        let why = match tls {
            rustls::Error::InvalidCertificate(CertificateError::UnknownIssuer) => {
                "its certificate is not signed by the root certificate given".to_owned()
            }
            rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            ) => format!(
                "its certificate does not name the host {:?}",
                match address.host() {
                    Host::Tcp(h) => h.as_str(),
                    Host::Socket(_) => "",
                }
            ),
            rustls::Error::InvalidCertificate(CertificateError::Expired)
            | rustls::Error::InvalidCertificate(CertificateError::ExpiredContext { .. }) => {
                "its certificate has expired".to_owned()
            }
            other => format!("TLS failed: {other}"),
        };
        return Error::new(
            ErrorKind::Engine,
            format!(
                "the certificate of the PostgreSQL server at {server} was not accepted with sslmode={}: {why}; give the right sslrootcert, or a weaker sslmode if you trust the network",
                address.sslmode().as_str()
            ),
        )
        .with_source(Redacted::of(err));
    }
    if text.contains("server does not support TLS") {
        return Error::new(
            ErrorKind::Engine,
            format!(
                "the PostgreSQL server at {server} does not offer TLS, which sslmode={} requires: enable ssl on the server, or use sslmode=prefer if you trust the network",
                address.sslmode().as_str()
            ),
        )
        .with_source(Redacted::of(err));
    }
    if text.contains("password missing") {
        return Error::new(
            ErrorKind::Auth,
            format!(
                "the PostgreSQL server at {server} asks a password for user {:?} and none was given: put it in the address, PGPASSWORD or ~/.pgpass",
                address.user()
            ),
        )
        .with_source(Redacted::of(err));
    }
    if let Some(io) = find_cause::<std::io::Error>(err) {
        let how = match address.host() {
            Host::Tcp(_) => "is it running and accepting TCP connections there?",
            Host::Socket(_) => "is it running, with its socket in that directory?",
        };
        let why = match io.kind() {
            std::io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
            std::io::ErrorKind::NotFound => "no such socket".to_owned(),
            std::io::ErrorKind::TimedOut => "timed out".to_owned(),
            _ => io.to_string(),
        };
        return Error::new(
            ErrorKind::Engine,
            format!("cannot reach the PostgreSQL server at {server} ({why}): {how}"),
        )
        .with_source(Redacted::of(err));
    }
    if text.contains("timeout") {
        return Error::new(
            ErrorKind::Engine,
            format!(
                "cannot reach the PostgreSQL server at {server} (timed out): is it running and reachable from here?"
            ),
        )
        .with_source(Redacted::of(err));
    }
    Error::new(
        ErrorKind::Engine,
        format!("connecting to {who} failed: {text}"),
    )
    .with_source(Redacted::of(err))
}

/// The one sentence for a failed statement; `doing` says what we were doing
/// ("reading table public.t").
pub fn query_error(address: &Address, doing: &str, err: &postgres::Error) -> Error {
    if let Some(db) = err.as_db_error() {
        let code = db.code().code();
        if code == "42501" {
            return Error::new(
                ErrorKind::Auth,
                format!(
                    "{doing} in {address} failed because user {:?} lacks a privilege ({}): grant it, or use a role that has it",
                    address.user(),
                    db.message()
                ),
            )
            .with_source(Redacted::of(err));
        }
        return Error::new(
            ErrorKind::Engine,
            format!(
                "{doing} in {address} failed: {} (SQLSTATE {code})",
                db.message()
            ),
        )
        .with_source(Redacted::of(err));
    }
    if err.is_closed() || find_cause::<std::io::Error>(err).is_some() {
        return Error::new(
            ErrorKind::Engine,
            format!(
                "the connection to the PostgreSQL server at {} was lost while {doing}: check the server and try again",
                address.server()
            ),
        )
        .with_source(Redacted::of(err));
    }
    Error::new(
        ErrorKind::Engine,
        format!("{doing} in {address} failed: {err}"),
    )
    .with_source(Redacted::of(err))
}

/// A driver error reduced to its text, as a source that can be kept. The
/// driver never puts a password in its messages; this keeps it that way
/// should a cause quote a connection string.
#[derive(Debug)]
struct Redacted(String);

impl Redacted {
    fn of(err: &postgres::Error) -> Redacted {
        let mut text = err.to_string();
        let mut cur = std::error::Error::source(err);
        while let Some(e) = cur {
            let s = e.to_string();
            if !text.contains(&s) {
                text.push_str(": ");
                text.push_str(&s);
            }
            cur = e.source();
        }
        Redacted(text)
    }
}

impl std::fmt::Display for Redacted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Redacted {}
