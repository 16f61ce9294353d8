//! The encryption flags: the keys that open archives, what new ones are
//! encrypted to, and `coffer rekey`.

use coffer::crypt::{self, Keys, Sealing};
use coffer::ops::rekey;
use coffer::store::{Store, StoreOptions};
use coffer::{Error, Result};
use serde::Serialize;

use crate::cli::{EncryptArgs, KeyArgs, OutputArgs, RekeyArgs};
use crate::signals::until_stop_signal;

/// The variable that holds a passphrase.
pub const PASSPHRASE_VAR: &str = "COFFER_PASSPHRASE";

/// The identities and passphrase given on the command line or in the
/// environment.
pub fn keys(args: &KeyArgs) -> Result<Keys> {
    let mut keys = Keys::none();
    for path in &args.identities {
        keys.read_identity_file(path)?;
    }
    if let Some(p) = passphrase(args)? {
        keys.set_passphrase(p);
    }
    Ok(keys)
}

fn passphrase(args: &KeyArgs) -> Result<Option<crypt::SecretString>> {
    if let Some(path) = &args.passphrase_file {
        return crypt::read_passphrase_file(path).map(Some);
    }
    match std::env::var(PASSPHRASE_VAR) {
        Ok(p) => crypt::check_passphrase(&p, PASSPHRASE_VAR).map(Some),
        Err(_) => Ok(None),
    }
}

/// What a new archive is encrypted to: the recipients given, else the
/// passphrase, else nothing.
pub fn sealing(args: &EncryptArgs, keys: &KeyArgs) -> Result<Option<Sealing>> {
    let list = recipients(args)?;
    if !list.is_empty() {
        if keys.passphrase_file.is_some() {
            return Err(Error::invalid(
                "age encrypts to recipients or to a passphrase, not both; leave out --passphrase-file or --encrypt-to",
            ));
        }
        return Sealing::recipients(&list).map(Some);
    }
    Ok(passphrase(keys)?.map(Sealing::Passphrase))
}

/// The recipients of `--encrypt-to` and `--encrypt-to-file`, each with
/// where it came from.
fn recipients(args: &EncryptArgs) -> Result<Vec<(String, String)>> {
    let mut list: Vec<(String, String)> = args
        .recipients
        .iter()
        .map(|r| (r.clone(), "--encrypt-to".to_string()))
        .collect();
    for file in &args.recipient_files {
        list.extend(crypt::read_recipients_file(file)?);
    }
    Ok(list)
}

/// The store options of a command that writes a new archive.
pub fn writing(store_options: &StoreOptions, sealing: Option<Sealing>) -> StoreOptions {
    StoreOptions {
        sealing,
        ..store_options.clone()
    }
}

#[derive(Serialize)]
struct RekeyJson<'a> {
    ok: bool,
    command: &'static str,
    location: &'a str,
    rekeyed: &'a [rekey::Rekeyed],
}

/// `coffer rekey`.
pub async fn run_rekey(
    args: &RekeyArgs,
    store_options: &StoreOptions,
    out: &OutputArgs,
) -> Result<()> {
    let new = match &args.new_passphrase_file {
        Some(path) => Sealing::Passphrase(crypt::read_passphrase_file(path)?),
        None => {
            let list = recipients(&args.encrypt)?;
            if list.is_empty() {
                return Err(Error::invalid(
                    "rekey needs the new recipients: give --encrypt-to, --encrypt-to-file or --new-passphrase-file",
                ));
            }
            Sealing::recipients(&list)?
        }
    };
    let store = Store::open(&args.location, store_options)?;
    let rekeyed = until_stop_signal(rekey::rekey(&store, &args.collections, &new)).await?;
    if out.json {
        return crate::commands::emit_json(&RekeyJson {
            ok: true,
            command: "rekey",
            location: store.url(),
            rekeyed: &rekeyed,
        });
    }
    if !out.quiet {
        for r in &rekeyed {
            crate::commands::emit(&format!(
                "rekeyed {}: it now opens with {}",
                r.location,
                r.recipients_text()
            ))?;
        }
    }
    Ok(())
}
