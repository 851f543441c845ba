//! ckptfs: a FUSE filesystem that keeps every earlier state of every file.
//!
//! Layers (each usable without the one above): `classify` and `policy` are pure;
//! `store` owns the on-disk version store; `fs` is the FUSE adapter; `daemon`,
//! `control` and `cli` wire them together.

pub mod classify;
pub mod cli;
pub mod config;
pub mod control;
pub mod daemon;
pub mod fs;
mod fusermount;
pub mod histogram;
pub mod metrics;
pub mod policy;
pub mod store;
pub mod sys;
