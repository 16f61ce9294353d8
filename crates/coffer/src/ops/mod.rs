//! The operations, each a function over engines and stores.

pub mod backup;
pub mod restore;
pub mod verify;
