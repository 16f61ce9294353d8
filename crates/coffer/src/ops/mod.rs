//! The operations, each a function over engines and stores.

pub mod backup;
pub mod collection;
pub mod export;
pub mod import;
mod load;
pub mod restore;
pub mod verify;
